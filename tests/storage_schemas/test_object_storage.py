"""An artifact root on object storage: a local S3-compatible server (moto's server mode on 127.0.0.1, started
here), the registry at ``s3://bucket/root`` with a mirror per "machine" (P4D_MIRROR): publish with the manifest
last, resolve from another machine, plain zarr clients by URL, the writers' lease."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zarr

from storage_schemas.artifacts import ArtifactError, ArtifactRegistry

URL = "s3://bucket/root"


def _registry(tmp_path, machine: str, monkeypatch, root: str = URL) -> ArtifactRegistry:
    monkeypatch.setenv("P4D_MIRROR", str(tmp_path / f"mirror-{machine}"))
    return ArtifactRegistry(root)


def _fs():
    import fsspec

    return fsspec.filesystem("s3", skip_instance_cache=True)


def test_publish_resolve_from_another_machine_and_read_a_store_by_url(s3_server, tmp_path, monkeypatch):
    a = _registry(tmp_path, "a", monkeypatch, URL + "/one")
    assert a.location == URL + "/one" and a.root == tmp_path / "mirror-a"
    with a.writer("stage", {"preset": "tiny", "x": 1}) as w:
        (w.path / "payload.txt").write_text("hello")
        g = zarr.open_group(w.path / "store.zarr", mode="w")
        g.create_array("x", shape=(4, 3), dtype="f4", chunks=(2, 3))[:] = np.arange(12).reshape(4, 3)
        art = w.commit()
    fs = _fs()
    published = sorted(p.split("/one/", 1)[1] for p in fs.find("bucket/root/one"))
    assert f"stage/{art.version}/manifest.json" in published and f"stage/{art.version}/payload.txt" in published
    assert "catalog.parquet" in published
    # a plain zarr client reads the store by its URL
    x = zarr.open_group(f"{URL}/one/stage/{art.version}/store.zarr", mode="r")["x"][:]
    assert x.sum() == 66
    from storage_schemas.inspect import store_report

    report, _ = store_report(f"{URL}/one/stage/{art.version}/store.zarr")  # `make inspect ARGS=s3://…/store.zarr`
    assert "x  float32[4, 3]" in report
    # another machine (empty mirror) lists it from the manifests and downloads it when resolved
    b = _registry(tmp_path, "b", monkeypatch, URL + "/one")
    assert [x.ref for x in b.list("stage")] == [art.ref] and not (b.root / "stage" / art.version).exists()
    got = b.resolve("stage@latest", preset="tiny")
    assert got.ref == art.ref and (got.path / "payload.txt").read_text() == "hello"
    assert zarr.open_group(got.path / "store.zarr", mode="r")["x"][:].sum() == 66
    # the same version asked for on machine b is reused, not rebuilt
    with pytest.raises(ArtifactError, match="already complete"):
        with b.writer("stage", {"preset": "tiny", "x": 1}):
            pass


def test_a_publish_cut_off_is_invisible_then_finished_by_the_next_run(s3_server, tmp_path, monkeypatch):
    a = _registry(tmp_path, "a", monkeypatch, URL + "/two")
    with a.writer("stage", {"x": 2}) as w:
        (w.path / "payload.txt").write_text("hello")
        art = w.commit()
    fs = _fs()
    fs.rm_file(f"bucket/root/two/stage/{art.version}/manifest.json")  # as if cut off before the manifest
    b = _registry(tmp_path, "b", monkeypatch, URL + "/two")
    assert b.list("stage") == [] and b.find("stage", art.version) is None  # payload without manifest: not complete
    assert a.find("stage", art.version) is not None  # machine a has it whole: it finishes the publish
    assert b.resolve(art.ref).ref == art.ref


def test_a_writer_on_another_machine_waits_for_the_lease_then_reuses_the_artifact(s3_server, tmp_path, monkeypatch):
    a = _registry(tmp_path, "a", monkeypatch, URL + "/three")
    b = _registry(tmp_path, "b", monkeypatch, URL + "/three")
    from storage_schemas.artifacts import ArtifactCompleted

    events = []
    holding = threading.Event()

    def machine_a():
        with a.writer("stage", {"x": 3}) as w:
            holding.set()
            time.sleep(2.0)
            (w.path / "payload.txt").write_text("a")
            events.append("a committed")
            w.commit()

    t = threading.Thread(target=machine_a)
    t.start()
    holding.wait(30)
    lease = json.loads(_fs().cat_file(f"bucket/root/three/stage/.lease-{a.version_for('stage', {'x': 3})}"))
    assert lease["owner"] == a.remote.owner and lease["expires"] > time.time()
    with pytest.raises(ArtifactError, match="lease"):
        with b.writer("stage", {"x": 3}, wait_s=0.5):
            pass
    with pytest.raises(ArtifactCompleted):  # waits for a's lease, then finds the version published
        with b.writer("stage", {"x": 3}):
            events.append("b wrote")
    t.join(30)
    assert events == ["a committed"]
