"""Artifact registry: versions, atomic creation under kills, resolution, lineage, catalog."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from storage_schemas.artifacts import ArtifactError, ArtifactRegistry


def make(registry, kind, config, parents=(), schema_version=1, payload="x"):
    with registry.writer(kind, config, parents, schema_version) as w:
        (w.path / "payload.txt").write_text(payload)
        w.counts["items"] = 3
        w.metrics["psnr"] = 21.5
        return w.commit()


def test_version_deterministic_and_sensitive_to_every_input(registry):
    base = dict(kind="psi3d", config={"lr": 1e-4, "steps": 10}, parents=["genhead_samples@abc"], schema_version=1)
    v = registry.version_for(**base)
    assert v == registry.version_for(**base)
    assert v == ArtifactRegistry(registry.root).version_for(
        **{**base, "config": {"steps": 10, "lr": 1e-4}}
    )  # key order
    changed = [
        {**base, "kind": "psi"},
        {**base, "config": {"lr": 2e-4, "steps": 10}},
        {**base, "parents": ["genhead_samples@abd"]},
        {**base, "schema_version": 2},
    ]
    versions = {registry.version_for(**c) for c in changed}
    assert v not in versions and len(versions) == 4


def test_version_changes_with_code_version(registry, monkeypatch):
    import storage_schemas.artifacts as artifacts

    v1 = registry.version_for("k", {"a": 1})
    monkeypatch.setattr(artifacts, "code_version", lambda: "9.9.9")
    assert registry.version_for("k", {"a": 1}) != v1


def test_commit_publishes_manifest_and_catalog(registry):
    art = make(registry, "genhead_samples", {"n": 4})
    assert art.path == registry.root / "genhead_samples" / art.version
    m = json.loads((art.path / "manifest.json").read_text())
    assert m["status"] == "complete" and m["config"] == {"n": 4} and m["counts"]["items"] == 3
    assert not registry.incomplete()
    table = pq.read_table(registry.catalog_path).to_pylist()
    assert [(r["kind"], r["version"], r["status"]) for r in table] == [("genhead_samples", art.version, "complete")]
    assert table[0]["bytes"] > 0 and json.loads(table[0]["metrics"]) == {"psnr": 21.5}
    with pytest.raises(ArtifactError, match="already complete"):
        with registry.writer("genhead_samples", {"n": 4}):
            pass


def test_resolve_latest_and_exact_and_refusals(registry):
    with pytest.raises(ArtifactError, match="no complete 'psi3d' artifact"):
        registry.resolve("psi3d@latest")
    a = make(registry, "psi3d", {"s": 1})
    time.sleep(1.1)
    b = make(registry, "psi3d", {"s": 2})
    assert registry.resolve("psi3d@latest").version == b.version
    assert registry.resolve(f"psi3d@{a.version}").version == a.version
    with pytest.raises(ArtifactError, match="does not exist"):
        registry.resolve("psi3d@000000000000")
    with pytest.raises(ArtifactError, match=r"schema version 1, this code reads schema version 2"):
        registry.resolve(f"psi3d@{a.version}", schema_version=2)
    # an interrupted writer's version reads as incomplete, naming the folder
    with registry.writer("psi3d", {"s": 3}) as w:
        tmp_version = w.version
    with pytest.raises(ArtifactError, match="is incomplete"):
        registry.resolve(f"psi3d@{tmp_version}")


def test_refs_cannot_name_a_path_outside_the_artifact_root(registry):
    outside = ArtifactRegistry(registry.root.parent / "elsewhere")
    art = make(outside, "psi3d", {"s": 1})  # complete, and reachable as root/../elsewhere/psi3d/<version>
    rel = f"../elsewhere/psi3d@{art.version}"
    assert (registry.root / "../elsewhere/psi3d" / art.version).resolve() == art.path.resolve()
    for ref in (rel, f"psi3d@../../elsewhere/psi3d/{art.version}", "psi3d@..", "/tmp@x", "psi3d@a/b"):
        with pytest.raises(ArtifactError, match="is not a kind or version name"):
            registry.resolve(ref)
    assert outside.resolve(f"psi3d@{art.version}").version == art.version


def test_lineage(registry):
    g = make(registry, "genhead_samples", {})
    p3 = make(registry, "psi3d", {}, [g])
    me = make(registry, "motion_encoder", {}, [g])
    pm = make(registry, "pseudo_mv", {}, [p3, me])
    psi = make(registry, "psi", {}, [pm, p3, me])
    assert {a.ref for a in registry.ancestors(psi)} == {pm.ref, p3.ref, me.ref, g.ref}
    assert {a.ref for a in registry.descendants(g)} == {p3.ref, me.ref, pm.ref, psi.ref}
    assert registry.descendants(psi) == []


WRITER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import storage_schemas.artifacts as artifacts
    from storage_schemas.artifacts import ArtifactRegistry
    mode = sys.argv[2]
    reg = ArtifactRegistry(sys.argv[1])
    if mode == "before_rename":
        real_replace = os.replace
        def slow_replace(src, dst):
            if os.path.isdir(src):
                print("renaming", flush=True); time.sleep(60)
            return real_replace(src, dst)
        artifacts.os.replace = slow_replace
    with reg.writer("stage", {"a": 1}) as w:
        (w.path / "part1").write_text("done")
        if mode == "mid_payload":
            print("writing", flush=True); time.sleep(60)
        w.commit()
    """
)


@pytest.mark.parametrize("mode", ["mid_payload", "before_rename"])
def test_killed_writer_leaves_nothing_complete_and_rerun_resumes(registry, mode):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(registry.root), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() in {"writing", "renaming"}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    version = registry.version_for("stage", {"a": 1})
    assert registry.find("stage", version) is None
    assert registry.list() == []
    assert len(registry.incomplete("stage")) == 1
    with pytest.raises(ArtifactError, match="incomplete"):
        registry.resolve(f"stage@{version}")
    # the rerun takes the lock (released by the kernel), adopts the leftover and completes
    with registry.writer("stage", {"a": 1}) as w:
        assert w.resumed and (w.path / "part1").read_text() == "done"
        art = w.commit()
    assert registry.resolve("stage@latest").version == art.version == version
    assert registry.incomplete() == []


def test_concurrent_writer_is_refused_when_it_must_not_wait(registry):
    with registry.writer("stage", {"a": 2}):
        with pytest.raises(ArtifactError, match="another process is writing"):
            with ArtifactRegistry(registry.root).writer("stage", {"a": 2}, wait_s=0):
                pass
        with pytest.raises(ArtifactError, match="still writing"):
            with ArtifactRegistry(registry.root).writer("stage", {"a": 2}, wait_s=0.6):
                pass


def test_a_second_run_of_a_stage_waits_for_the_first_and_reuses_its_artifact(registry):
    """Two pipelines on one root (here two threads): the second waits for the first's lock, then returns the
    artifact the first built, built once."""
    import threading
    import time

    from pipeline_tasks.stage import run_once

    builds = []

    def build(w):
        builds.append(threading.get_ident())
        time.sleep(1.0)
        (w.path / "payload").write_text("x")

    results = {}

    def run(name):
        results[name] = run_once(
            ArtifactRegistry(registry.root), "shared", {"a": 3}, [], 1, build, "pipeline_tasks.stage"
        )

    first = threading.Thread(target=run, args=("first",))
    first.start()
    time.sleep(0.3)
    run("second")
    first.join(10)
    assert len(builds) == 1
    assert results["first"].ref == results["second"].ref and (results["second"].path / "payload").exists()


def test_catalog_lists_incomplete_rows(registry):
    make(registry, "a", {})
    with registry.writer("b", {}):
        pass  # not committed
    registry.write_catalog()
    rows = pq.read_table(registry.catalog_path).to_pylist()
    assert sorted((r["kind"], r["status"]) for r in rows) == [("a", "complete"), ("b", "incomplete (abandoned)")]
    assert registry.remove_abandoned() and registry.incomplete() == []


def test_abandoned_temporaries_are_told_from_running_ones_and_removed_on_request(registry, capsys):
    from storage_schemas.inspect import main as inspect_main

    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(registry.root), "mid_payload"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)  # a stage killed mid-way: its folder is what the next run resumes from
    proc.wait()
    with registry.writer("live", {"b": 1}) as live:  # a stage running now (its lock is held)
        temps = {t.kind: t for t in registry.temporaries()}
        assert not temps["stage"].in_use and temps["live"].in_use
        assert temps["stage"].idle_s < 600 and temps["stage"].bytes > 0
        assert registry.remove_abandoned(older_than_s=3600) == []  # too recent for that threshold
        assert inspect_main(["--root", str(registry.root), "--stale"]) == 0
        out = capsys.readouterr().out
        assert "stage" in out and "abandoned" in out and "running" in out
        assert inspect_main(["--root", str(registry.root), "--remove-stale", "--older-than", "0"]) == 0
        assert "removed" in capsys.readouterr().out
        assert [t.kind for t in registry.temporaries()] == ["live"] and live.path.is_dir()  # the running one stays
        live.commit()
    assert registry.temporaries() == []


def test_latest_is_scoped_to_the_preset_when_one_is_given(registry):
    tiny = make(registry, "stage", {"preset": "tiny", "a": 1})
    small = make(registry, "stage", {"preset": "small", "a": 1})  # newer
    assert registry.resolve("stage@latest").ref == small.ref  # unscoped: the newest of any preset
    assert registry.resolve("stage@latest", preset="tiny").ref == tiny.ref
    assert registry.resolve(f"stage@{small.version}", preset="tiny").ref == small.ref  # a named version is as named
    with pytest.raises(ArtifactError, match="no complete 'stage' artifact of preset 'paper'.*small, tiny"):
        registry.resolve("stage@latest", preset="paper")
