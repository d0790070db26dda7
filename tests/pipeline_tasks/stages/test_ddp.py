"""Ψ3d trained by torchrun with 2 CPU processes (gloo): a complete artifact, ranks in sync."""

import json

import pytest

from pipeline_tasks.config import load_config
from pipeline_tasks.genhead_samples import run_genhead_stage
from pipeline_tasks.train_psi3d import load_psi3d, train_psi3d
from pipeline_tasks.training.distributed import LOG
from storage_schemas.artifacts import ArtifactRegistry

TINY = [
    "device=cpu",
    "genhead.n_identities=6",
    "genhead.shard_size=6",
    "genhead.views_per_identity=2",
    "psi3d.steps=3",
    "psi3d.val_identities=2",
    "psi3d.batch_size=2",
    "psi3d.checkpoint_every=1",
    "psi3d.val_every=3",
    "psi3d.sample_every=3",
    "psi3d.log_every=1",
    "psi3d.nproc_per_node=2",
]


@pytest.mark.slow
def test_psi3d_ddp_two_processes(tmp_path):
    reg = ArtifactRegistry(tmp_path / "artifacts")
    cfg = load_config("tiny", TINY)
    g = run_genhead_stage(cfg, reg, progress=False)
    # stop after 2 of 3 steps (as a kill would), then resume: every rank restarts from rank 0's checkpoint
    with pytest.raises(InterruptedError):
        train_psi3d(cfg, g, reg, stop_after=2)
    art = train_psi3d(cfg, g, reg)

    m = art.manifest
    assert m["counts"]["steps"] == 3 and m["counts"]["train_identities"] == 4
    assert {"val_psnr_novel", "val_margin_vs_input_min", "val_soft_iou_min", "baseline_psnr_input_novel"} <= set(
        m["metrics"]
    )
    assert m["extra"]["ddp_world_size"] == 2  # the ranks' weights were checked identical at the end
    assert json.loads((art.path / "metrics.json").read_text())["val_psnr_novel"] == m["metrics"]["val_psnr_novel"]
    log = (art.path / LOG).read_text()
    assert log.count("=== ") == 2  # one torchrun per call, output appended
    assert (art.path / "samples" / "step_000003.png").exists() and (art.path / "curves.png").exists()
    assert not (art.path / "checkpoints").exists()
    assert not list(art.path.glob("ddp_*.json"))
    psi = load_psi3d(art, cfg.model)
    assert not any(p.isnan().any() for p in psi.parameters())
