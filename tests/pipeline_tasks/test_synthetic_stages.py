"""Stage 1 (genhead_samples) and the synthetic videos, through the plain functions."""

import json

import numpy as np
import pytest
import torch

from models.genhead import params as P
from models.genhead.ground_truth import GroundTruth
from models.genhead.motion import talking_trajectory
from pipeline_tasks.config import load_config
from pipeline_tasks.data.video_sidecars import list_videos, read_ground_truth_maps, read_sidecar
from pipeline_tasks.genhead_samples import CONTACT_SHEET, STORE, run_genhead_stage, write_samples
from pipeline_tasks.ingest.decode import read_frames
from pipeline_tasks.synthetic_videos import run_videos_stage
from storage_schemas import genhead_samples as gs
from storage_schemas.code_hash import stage_code_hash

SMALL = [
    "genhead.views_per_identity=2",
    "genhead.shard_size=2",
    "genhead.resolution=32",
    "genhead.preview_identities=3",
    "genhead.render_batch=2",
]


def test_stage1_writes_a_valid_store_and_is_reused(registry):
    cfg = load_config("tiny", SMALL + ["genhead.n_identities=4"])
    art = run_genhead_stage(cfg, registry, progress=False)
    gs.validate(art.path / STORE)
    grp = gs.open_read(art.path / STORE)
    assert grp["images"].shape == (4, 2, 32, 32, 3) and grp["alpha"].shape == (4, 2, 32, 32)
    assert grp.attrs["parameter_names"]["expression"] == P.EXPRESSION_NAMES
    imgs = np.asarray(grp["images"])
    assert imgs[:, 0].std() > 10 and not np.array_equal(imgs[0, 0], imgs[0, 1])  # views differ
    assert (art.path / CONTACT_SHEET).stat().st_size > 1000
    assert art.manifest["counts"]["images"] == 8 and art.manifest["metrics"]["images_per_s"] > 0
    assert run_genhead_stage(cfg, registry, progress=False).version == art.version
    assert art.manifest["code_hash"] == stage_code_hash(
        "pipeline_tasks.genhead_samples"
    )  # its version follows its code
    # head pose is the camera: the stored (head-relative) camera with pose 0 reproduces the stored image,
    # which was rendered with the identity's pose γ at a world camera; γ stays a label
    i, v = 1, 1
    labels = {k: torch.from_numpy(np.asarray(grp[k][i : i + 1])) for k in ("shape", "expression", "pose", "gaze", "z")}
    assert labels["pose"].abs().max() > 0.01  # the sampled head is turned
    cams = torch.from_numpy(np.asarray(grp["cameras"][i : i + 1, v]))
    u8 = lambda out: ((out.rgb[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()  # noqa: E731
    gen = GroundTruth().generator
    again = u8(
        gen.render(labels["shape"], labels["expression"], torch.zeros(1, 3), labels["gaze"], labels["z"], cams, 32)
    )
    assert np.abs(again - imgs[i, v]).max() <= 1
    rotated_twice = u8(gen.render(*labels.values(), cams, 32))  # pose applied on top of a head-relative camera
    assert np.abs(rotated_twice - imgs[i, v]).mean() > 3
    depth = np.asarray(grp["depth"][i, v]).astype(np.float32)
    inside = np.asarray(grp["alpha"][i, v]) > 200
    assert inside.any() and 3.0 < depth[inside].mean() < 4.6  # ray distance to the face, camera at radius ~4


def test_stage1_resumes_at_the_first_missing_shard(tmp_path):
    full = load_config("tiny", SMALL + ["genhead.n_identities=4"])
    part = load_config("tiny", SMALL + ["genhead.n_identities=2"])
    write_samples(part, tmp_path / "a", progress=False)  # a run killed after one shard
    stats = write_samples(full, tmp_path / "a", progress=False)
    assert stats["resumed_from"] == 2 and stats["rendered_images"] == 4
    write_samples(full, tmp_path / "b", progress=False)
    a, b = gs.open_read(tmp_path / "a" / STORE), gs.open_read(tmp_path / "b" / STORE)
    for k in ("images", "cameras", "expression", "identity"):
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k


def test_videos_decode_to_the_sidecar_frames_and_match_ground_truth(registry):
    cfg = load_config("tiny", ["videos.n_videos=1", "videos.n_frames=10", "videos.resolution=32"])
    art = run_videos_stage(cfg, registry, progress=False)
    (row,) = list_videos(art)
    side = read_sidecar(row["sidecar"])
    frames = read_frames(row["mp4"])
    assert len(frames) == side["n_frames"] == 10
    frame = frames[4]
    assert frame.shape == (side["height"], side["width"], 3) == (32, 32, 3)
    assert np.asarray(side["cameras"]).shape == (10, 25)
    gt = GroundTruth()
    # the head sways in the world; the sidecar camera is head-relative: pose 0 at cameras[t] is frame t
    assert np.abs(np.asarray(side["pose"])[:, 0]).max() > 0.02
    out = gt.render(
        side["identity"],
        torch.tensor(side["cameras"][4])[None],
        32,
        expression=torch.tensor(side["expression"][4]),
        gaze=torch.tensor(side["gaze"][4]),
    )
    world = gt.render(
        side["identity"],
        torch.tensor(side["world_cameras"][4])[None],
        32,
        expression=torch.tensor(side["expression"][4]),
        pose=torch.tensor(side["pose"][4]),
        gaze=torch.tensor(side["gaze"][4]),
    )
    assert torch.allclose(out.rgb, world.rgb, atol=2e-3)
    ref = ((out.rgb[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    assert np.abs(ref - frame.astype(np.float32)).mean() < 6  # H.264 at crf 18
    maps = read_ground_truth_maps(row["sidecar"], side)  # the generator's alpha, kept for stage 3
    assert maps["alpha"].shape == (10, 32, 32) and maps["alpha"].dtype == np.uint8
    assert np.abs(maps["alpha"][4].astype(np.float32) / 255 - out.alpha[0, 0].numpy()).max() < 1 / 254
    assert run_videos_stage(cfg, registry, progress=False).version == art.version
    with pytest.raises(ValueError, match="must be even"):  # any even size decodes (PyAV); H.264 yuv420p needs even
        run_videos_stage(load_config("tiny", ["videos.resolution=33"]), registry, progress=False)
    with pytest.raises(ValueError, match="not a synthetic-video sidecar"):
        bad = art.path / "bad.json"
        bad.write_text(json.dumps({"format": "x"}))
        read_sidecar(bad)


def test_talking_trajectories_are_smooth_bounded_and_expressive():
    tr = talking_trajectory(250, 25, torch.Generator().manual_seed(3))
    e, pose = tr["expression"], tr["pose"]
    assert e.min() >= 0 and e.max() <= 1
    assert pose[:, 0].abs().max() <= np.radians(30) + 1e-6
    jaw = e[:, P.EXPRESSION_NAMES.index("jaw_open")]
    assert jaw.max() > 0.3 and (
        jaw.diff().abs().max() < 0.4
    )  # speech moves the jaw; ≤ 4.5 syllables/s keeps steps small
    assert e[:, P.EXPRESSION_NAMES.index("blink_left")].max() > 0.5  # at least one blink in 10 s
    assert pose.diff(dim=0).abs().max() < 0.05


def _within_clip_smile_change(clips: list[np.ndarray]) -> float:
    """Mean |Δ smile| over all frame pairs of each clip."""
    s = P.EXPRESSION_NAMES.index("smile")
    return float(np.mean([np.abs(c[:, None, s] - c[None, :, s]).mean() for c in clips]))


def test_smile_events_make_a_clip_change_its_smile():
    def clips(hz):
        return [
            talking_trajectory(48, 25, torch.Generator().manual_seed(i), smile_events_hz=hz)["expression"].numpy()
            for i in range(64)
        ]

    still, default, lively = clips(0.0), clips(0.15), clips(0.5)
    s = P.EXPRESSION_NAMES.index("smile")
    assert max(c[:, s].max() for c in still) <= 0.25 + 1e-6  # without events only the clip's smile level is left
    assert _within_clip_smile_change(lively) > 1.5 * _within_clip_smile_change(default)
    assert _within_clip_smile_change(default) > _within_clip_smile_change(still)
    # the default is the benchmark's motion model: the same trajectory as before the option existed
    same = talking_trajectory(48, 25, torch.Generator().manual_seed(0))["expression"].numpy()
    assert np.array_equal(same, default[0])


def test_videos_stage_reads_the_smile_rate(registry):
    def sidecar_smiles(hz):
        cfg = load_config(
            "tiny",
            ["videos.n_videos=3", "videos.n_frames=24", "videos.resolution=16", f"videos.smile_events_per_second={hz}"],
        )
        art = run_videos_stage(cfg, registry, progress=False)
        return art, [np.asarray(read_sidecar(r["sidecar"])["expression"]) for r in list_videos(art)]

    still_art, still = sidecar_smiles(0.0)
    busy_art, busy = sidecar_smiles(5.0)
    assert still_art.version != busy_art.version  # a different clip schedule is a different dataset
    assert max(c[:, P.EXPRESSION_NAMES.index("smile")].max() for c in still) <= 0.25 + 1e-6
    assert _within_clip_smile_change(busy) > _within_clip_smile_change(still)


KILL_SCRIPT = """
import os, sys
from pathlib import Path
import zarr
from pipeline_tasks.config import load_config
from pipeline_tasks.genhead_samples import write_samples

kill_at, events = int(sys.argv[2]), [0]
def dying(method):
    def wrapper(self, *args, **kwargs):
        events[0] += 1
        if events[0] == kill_at:
            os._exit(137)  # as SIGKILL: no cleanup, no finally
        return method(self, *args, **kwargs)
    return wrapper
zarr.Array.__setitem__ = dying(zarr.Array.__setitem__)
zarr.Array.resize = dying(zarr.Array.resize)
write_samples(load_config("tiny", sys.argv[3:]), Path(sys.argv[1]), progress=False)
"""


@pytest.mark.parametrize(
    "kill_at", [22, 31, 40]
)  # the 2nd append: after images, midway, before identity (its last write)
def test_stage1_killed_during_an_append_resumes_to_the_uninterrupted_store(tmp_path, kill_at):
    """A real process death inside ``GroupSchema.append`` (10 arrays × resize + write per shard), then a rerun."""
    import subprocess
    import sys

    overrides = SMALL + ["genhead.n_identities=4"]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "a"), str(kill_at), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    store = tmp_path / "a" / STORE
    assert gs.num_samples(store) == 2  # the first shard is committed, the torn second is not
    with pytest.raises(gs.SchemaError):
        gs.validate(store)  # a torn append is not a valid store
    stats = write_samples(load_config("tiny", overrides), tmp_path / "a", progress=False)
    assert stats["resumed_from"] == 2
    gs.validate(store)
    write_samples(load_config("tiny", overrides), tmp_path / "b", progress=False)
    a, b = gs.open_read(store), gs.open_read(tmp_path / "b" / STORE)
    for spec in gs.SCHEMA.arrays:
        assert np.array_equal(np.asarray(a[spec.name]), np.asarray(b[spec.name])), spec.name
