"""Ψ3d learns 3D, at a size a test can afford: 32² images, 96 identities, 250 steps (~2 min on 2 cores).

What must hold once it has learned anything (values measured when this test was written, in
brackets): the held-out novel views beat copying the input at every bin other than 0° [+3.2 dB],
the background alone does not reproduce the target (the 2D shortcut is closed) [14.4 vs 19.2 dB],
and stage 3's pseudo views of the synthetic videos match the truth at their cameras better than
the frame itself does [18.3 vs 13.9 dB]: they are novel views, not copies of the frame.
"""

import json

import pytest
import torch

from pipeline_tasks import pseudo_mv as pmv_stage
from pipeline_tasks.config import load_config
from pipeline_tasks.genhead_samples import run_genhead_stage
from pipeline_tasks.synthetic_videos import run_videos_stage
from pipeline_tasks.train_motion_encoder import train_motion_encoder
from pipeline_tasks.train_psi3d import train_psi3d
from storage_schemas.artifacts import ArtifactRegistry

MICRO = [
    "genhead.n_identities=96",
    "genhead.shard_size=32",
    "genhead.views_per_identity=4",
    "genhead.resolution=32",
    "model.render.image_resolution=32",
    "model.render.neural_resolution=16",
    "model.psi.image_resolution=32",
    "model.psi.triplane_resolution=32",
    "model.psi.token_grid=4",
    "psi3d.steps=250",
    "psi3d.batch_size=8",
    "psi3d.val_identities=8",
    "psi3d.val_every=1000",
    "psi3d.sample_every=1000",
    "psi3d.checkpoint_every=1000",
    "eval.yaw_bins_degrees=[-30,0,30]",
    "motion_encoder.steps=2",
    "motion_encoder.val_identities=2",
    "motion_encoder.batch_size=8",
    "motion_encoder.input_size=32",
    "videos.n_videos=2",
    "videos.n_frames=6",
    "videos.resolution=32",
    "pseudo_mv.views_per_frame=3",
]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    torch.set_num_threads(2)
    reg = ArtifactRegistry(tmp_path_factory.mktemp("learns") / "artifacts")
    cfg = load_config("tiny", MICRO)  # the tiny preset's losses, lr and dropout; smaller images
    g = run_genhead_stage(cfg, reg, progress=False)
    p3 = train_psi3d(cfg, g, reg)
    me = train_motion_encoder(cfg, g, reg)
    vids = run_videos_stage(cfg, reg, progress=False)
    pmv = pmv_stage.convert(cfg, p3, me, vids, reg, progress=False)
    return {"psi3d": p3, "pseudo_mv": pmv}


def test_psi3d_beats_copy_input_at_every_novel_bin(learned):
    m = learned["psi3d"].manifest["metrics"]
    for b in ("-30", "+30"):
        assert m[f"val_psnr_yaw{b}"] > m[f"val_psnr_input_yaw{b}"] + 1.0, b
        assert m[f"val_psnr_yaw{b}"] > m[f"val_psnr_mean_image_yaw{b}"] + 1.0, b
    assert m["val_soft_iou_min"] > 0.8  # a silhouette, not a fog (~0.3 here)


def test_trained_psi3d_closes_the_background_shortcut(learned):
    m = learned["psi3d"].manifest["metrics"]
    # the background network alone is far from the target: the volume holds the head
    assert m["val_background_psnr_novel"] < m["val_psnr_novel"] - 2.0
    assert m["val_alpha_inside_mean"] > 0.8 > 0.2 > m["val_alpha_outside_mean"]


def test_pseudo_views_are_novel_views(learned):
    pmv = learned["pseudo_mv"]
    check = json.loads((pmv.path / "pseudo_view_check.json").read_text())
    assert check["videos"] == 2 and check["views"] == check["frames"] * 3
    assert check["psnr_views"] > check["psnr_copy_frame"] + 1.0
    assert all(v["psnr_views"] > v["psnr_copy_frame"] for v in check["per_video"])
    assert check["soft_iou_views"] > 0.8
    assert pmv.manifest["metrics"]["pseudo_views_margin_vs_copy_frame"] == pytest.approx(check["margin_vs_copy_frame"])
