"""Zarr schemas: round trip, chunking, and validation failures that name the store."""

import numpy as np
import pytest
import zarr

from storage_schemas import genhead_samples as gs
from storage_schemas import pseudo_mv as pm
from storage_schemas.inspect import store_report
from storage_schemas.zarr_schema import SchemaError


def block(n, v=2, r=8, seed=0):
    rng = np.random.default_rng(seed)
    cameras = rng.normal(size=(n, v, 25)).astype(np.float32)
    cameras[..., 16] = np.abs(cameras[..., 16]) + 1  # a focal length
    return {
        "images": rng.integers(0, 256, (n, v, r, r, 3), dtype=np.uint8),
        "alpha": rng.integers(0, 256, (n, v, r, r), dtype=np.uint8),
        "depth": rng.uniform(3, 5, (n, v, r, r)).astype(np.float16),
        "cameras": cameras,
        "shape": rng.normal(size=(n, 4)).astype(np.float32),
        "expression": rng.normal(size=(n, 3)).astype(np.float32),
        "pose": rng.normal(size=(n, 3)).astype(np.float32),
        "gaze": rng.normal(size=(n, 2)).astype(np.float32),
        "z": rng.normal(size=(n, 5)).astype(np.float32),
        "identity": np.arange(n, dtype=np.int64) + seed * 100,
    }


def make_genhead(path, shards=(4, 3)):
    gs.create(
        path,
        2,
        8,
        4,
        3,
        3,
        2,
        5,
        shard_identities=4,
        attrs={"generator_backend": "test", "parameter_names": {"expression": ["a", "b", "c"]}},
    )
    blocks = [block(n, seed=i) for i, n in enumerate(shards)]
    for b in blocks:
        gs.append(path, b)
    gs.finalize(path)
    return blocks


def test_genhead_round_trip(tmp_path):
    path = tmp_path / "store.zarr"
    blocks = make_genhead(path)
    gs.validate(path)
    g = gs.open_read(path)
    for name in blocks[0]:
        np.testing.assert_array_equal(g[name][:], np.concatenate([b[name] for b in blocks]))
    assert g["images"].chunks == (1, 2, 8, 8, 3)  # one identity = one chunk
    assert g["images"].shards == (4, 2, 8, 8, 3)
    assert g.attrs["parameter_names"]["expression"] == ["a", "b", "c"]
    assert gs.num_samples(path) == 7
    with pytest.raises(Exception):  # read-only
        g["identity"][0] = 5
    with pytest.raises(FileExistsError):
        gs.create(path, 2, 8, 4, 3, 3, 2, 5)


def test_torn_append_and_zero_filled_gap_are_invalid_and_resume_overwrites_the_tail(tmp_path):
    path = tmp_path / "store.zarr"
    make_genhead(path, shards=(4,))
    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    g["images"].resize((6, *g["images"].shape[1:]))  # a killed append: its first array grew, nothing was committed
    g["images"][4:6] = 7
    assert gs.num_samples(path) == 4
    with pytest.raises(SchemaError, match=r"images: 6 samples but 4 committed"):
        gs.validate(path)
    nxt = block(3, seed=5)
    assert gs.append(path, nxt) == 7  # written from the committed count: the torn tail is overwritten
    gs.validate(path)
    np.testing.assert_array_equal(gs.open_read(path)["images"][4:], nxt["images"])
    # the corruption the old resume made: lengths agree, but a stretch was never written (zero cameras)
    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    for spec in gs.SCHEMA.arrays:
        g[spec.name][5:6] = 0
    with pytest.raises(SchemaError, match=r"1 sample\(s\) with a zero camera \(never written\), first at index 5"):
        gs.validate(path)


def test_append_rejects_mismatched_block(tmp_path):
    path = tmp_path / "store.zarr"
    make_genhead(path, shards=(2,))
    bad = block(2)
    bad["images"] = bad["images"][:, :, :4]
    with pytest.raises(ValueError, match="images"):
        gs.append(path, bad)
    missing = block(2)
    del missing["z"]
    with pytest.raises(ValueError, match="expected"):
        gs.append(path, missing)


def test_validation_reports_every_problem_with_path(tmp_path):
    path = tmp_path / "store.zarr"
    make_genhead(path)
    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    del root["gaze"]  # missing array
    root.create_array("pose_bad", shape=(7, 3), dtype="float32")
    del root["pose"]
    root.create_array("pose", shape=(7, 3), dtype="float64", dimension_names=("identity", "pose_param"))  # wrong dtype
    del root["z"]
    root.create_array("z", shape=(7, 9), dtype="float32", dimension_names=("identity", "z_dim"))  # wrong shape
    zarr.consolidate_metadata(str(path))
    with pytest.raises(SchemaError) as info:
        gs.validate(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"{path}/gaze: array is missing" in msg
    assert f"{path}/pose: dtype is float64, expected float32" in msg
    assert f"{path}/z: dimension z_dim (axis 1) is 9, expected 5" in msg
    assert len(info.value.problems) == 3
    report, ok = store_report(path)
    assert not ok and "validation: FAILED" in report


def test_validate_missing_store_names_path(tmp_path):
    with pytest.raises(SchemaError, match=str(tmp_path / "nope.zarr")):
        gs.validate(tmp_path / "nope.zarr")


def video_arrays(t=5, k=3, r=8, d=6):
    rng = np.random.default_rng(t)
    return {
        "frames": rng.integers(0, 256, (t, r, r, 3), dtype=np.uint8),
        "alpha": rng.integers(0, 256, (t, r, r), dtype=np.uint8),
        "frame_cameras": rng.normal(size=(t, 25)).astype(np.float32),
        "frame_motion": rng.normal(size=(t, d)).astype(np.float32),
        "views": rng.integers(0, 256, (t, k, r, r, 3), dtype=np.uint8),
        "view_alpha": rng.integers(0, 256, (t, k, r, r), dtype=np.uint8),
        "view_cameras": rng.normal(size=(t, k, 25)).astype(np.float32),
        "view_motion": rng.normal(size=(t, k, d)).astype(np.float32),
    }


ATTRS = dict(
    source_file="clip.mp4", source_hash="abc", fps=25.0, crop=None, camera_source="ground_truth", quality_flags={}
)


def test_pseudo_mv_round_trip_and_index(tmp_path):
    path = tmp_path / "store.zarr"
    pm.create(path)
    a, b = video_arrays(5), video_arrays(7)
    pm.write_video(path, "v0", a, ATTRS, shard_frames=4)
    pm.write_video(path, "v1", b, {**ATTRS, "camera_source": "estimated"})
    pm.set_index(
        path,
        [
            {"video_id": "v0", "frames": 5, "status": "converted"},
            {"video_id": "v1", "frames": 7, "status": "converted"},
            {"video_id": "bad", "frames": 0, "status": "skipped", "reason": "no face"},
        ],
    )
    pm.finalize(path)
    pm.validate(path)
    g = pm.open_read(path)
    for k in a:
        np.testing.assert_array_equal(g["v0"][k][:], a[k])
    assert g["v0"]["views"].chunks == (1, 3, 8, 8, 3)
    assert pm.completed_videos(path) == ["v0", "v1"]
    assert [e["status"] for e in pm.read_index(path)] == ["converted", "converted", "skipped"]
    with pytest.raises(FileExistsError):
        pm.write_video(path, "v0", a, ATTRS)


def test_pseudo_mv_incomplete_group_is_invalid_then_rewritten(tmp_path):
    path = tmp_path / "store.zarr"
    pm.create(path)
    pm.write_video(path, "v0", video_arrays(), ATTRS)
    root = zarr.open_group(str(path), mode="r+")
    root["v0"].attrs["complete"] = False  # as if killed before the completion mark
    with pytest.raises(SchemaError, match="v0: video group is incomplete"):
        pm.validate(path)
    assert pm.completed_videos(path) == []
    pm.write_video(path, "v0", video_arrays(), ATTRS)  # resume rewrites it
    pm.validate(path)


def test_pseudo_mv_rejects_unknown_camera_source(tmp_path):
    path = tmp_path / "store.zarr"
    pm.create(path)
    with pytest.raises(ValueError, match="camera_source"):
        pm.write_video(path, "v0", video_arrays(), {**ATTRS, "camera_source": "guess"})


def test_a_second_writer_of_a_video_waits_for_the_first_and_the_claim_dies_with_its_holder(tmp_path):
    """``video_claim``: a second claim of the same video waits until the first is released (another video's does
    not); a claim held by a process that is killed is free at once (the kernel drops the flock)."""
    import subprocess
    import sys
    import threading
    import time

    store = tmp_path / "store.zarr"
    pm.create(store)
    order = []
    with pm.video_claim(store, "v0"):
        with pm.video_claim(store, "v1"):  # another video: no wait
            order.append("v1")

        def second():
            with pm.video_claim(store, "v0"):
                order.append("second v0")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first v0 done")
    t.join(10)
    assert order == ["v1", "first v0 done", "second v0"]
    assert not (store / "v0").exists() and pm.claims_dir(store).parent == store.parent  # locks live beside the store
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from storage_schemas import pseudo_mv as pm\n"
            "with pm.video_claim(sys.argv[1], 'v0'):\n    print('held', flush=True); time.sleep(60)",
            str(store),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(10)
    done = threading.Event()
    threading.Thread(target=lambda: (pm.video_claim(store, "v0").__enter__(), done.set()), daemon=True).start()
    assert done.wait(10)
