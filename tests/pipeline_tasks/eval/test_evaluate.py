"""Stage 5 end to end on tiny shapes (an untrained Ψ3d / Ψ), and its refusals."""

import json

import numpy as np
import pytest
import torch

from models.checkpoints import save_checkpoint
from models.psi import build_psi, init_psi_from_psi3d
from models.psi.network import is_cross_attention_param
from pipeline_tasks.analyser_samples import run_analyser_samples_stage
from pipeline_tasks.config import load_config
from pipeline_tasks.eval.results import EvaluationError
from pipeline_tasks.evaluate import analyser_config, evaluate
from pipeline_tasks.genhead_samples import run_genhead_stage
from pipeline_tasks.train_motion_encoder import train_motion_encoder
from pipeline_tasks.training.loop import CHECKPOINT

SMALL = [
    "device=cpu",
    "genhead.n_identities=6",
    "genhead.views_per_identity=2",
    "genhead.shard_size=6",
    "genhead.preview_identities=2",
    "genhead.render_batch=6",
    "analyser_samples.n_identities=4",
    "analyser_samples.expressions_per_identity=2",
    "analyser_samples.shard_size=8",
    "analyser_samples.visibility_samples=4",
    "motion_encoder.steps=3",
    "motion_encoder.batch_size=8",
    "motion_encoder.val_identities=2",
    "motion_encoder.width=8",
    "motion_encoder.checkpoint_every=100",
    "motion_encoder.val_every=100",
    "eval.n_identities=2",
    "eval.yaw_bins_degrees=[-30,0,30]",
    "eval.trajectory_frames=8",
    "eval.probe_identities=4",
    "eval.probe_views=2",
    "eval.grid_identities=2",
]


def _model_artifact(registry, kind, cfg, net, parents, preset_in_manifest=None, tag=""):
    conf = {"preset": preset_in_manifest or cfg.preset, "model": cfg.model.model_dump(mode="json"), "test": kind + tag}
    from pipeline_tasks.train_psi import SCHEMA_VERSION as PSI_SCHEMA
    from pipeline_tasks.train_psi3d import SCHEMA_VERSION as PSI3D_SCHEMA

    with registry.writer(kind, conf, parents, schema_version=PSI3D_SCHEMA if kind == "psi3d" else PSI_SCHEMA) as w:
        save_checkpoint(w.path / CHECKPOINT, cfg.model, {"psi": net}, extra={"kind": kind})
        return w.commit()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry with real (tiny) genhead samples, E_mot, an untrained Ψ3d and the Ψ initialised from it."""
    from storage_schemas.artifacts import ArtifactRegistry

    torch.set_num_threads(2)
    registry = ArtifactRegistry(tmp_path_factory.mktemp("eval") / "artifacts")
    cfg = load_config("tiny", SMALL)
    samples = run_genhead_stage(cfg, registry, progress=False)
    e_mot = train_motion_encoder(cfg, run_analyser_samples_stage(cfg, registry, progress=False), registry)
    torch.manual_seed(0)
    psi3d = build_psi(cfg.model, static=True).eval()
    p3 = _model_artifact(registry, "psi3d", cfg, psi3d, [samples])
    psi = build_psi(cfg.model).eval()
    init_psi_from_psi3d(psi, psi3d.state_dict())
    ps = _model_artifact(registry, "psi", cfg, psi, [p3, e_mot])
    return registry, cfg, samples, p3, ps


def test_psi3d_evaluation_writes_the_artifact_and_is_reused(world):
    registry, cfg, _, p3, _ = world
    art = evaluate(cfg, p3.ref, registry)
    m = json.loads((art.path / "metrics.json").read_text())
    for f in ("report.md", "benchmark.json", "grids/novel_view.png", "plots/metrics_vs_yaw.png"):
        assert (art.path / f).stat().st_size > 100, f
    nv, base = m["tasks"]["novel_view"], m["tasks"]["input_as_prediction"]
    assert nv["bins"] == ["-30°", "+0°", "+30°"] and len(nv["per_image"]["psnr"]) == 2
    # known answer: at 0° the source *is* the ground truth (same identity, expression, camera)
    i0 = nv["bins"].index("+0°")
    assert base["by_bin"]["psnr"][i0] > 60 and base["by_bin"]["ssim"][i0] == pytest.approx(1.0, abs=1e-4)
    assert base["by_bin"]["lpips"][i0] == pytest.approx(0.0, abs=1e-5)
    assert base["by_bin"]["identity_similarity"][i0] == pytest.approx(1.0, abs=1e-4)
    assert base["by_bin"]["psnr"][0] < 40  # but not at ±30°
    assert art.manifest["metrics"]["nvs_psnr_yaw-30"] == pytest.approx(nv["by_bin"]["psnr"][0], abs=1e-3)
    # novel-view means leave the source view out (there copy-input scores 100 dB); it is reported apart
    assert nv["mean_excludes"] == ["+0°"] and base["mean"]["psnr"] < 40
    assert base["mean"]["psnr"] == pytest.approx((base["by_bin"]["psnr"][0] + base["by_bin"]["psnr"][2]) / 2, abs=1e-6)
    assert base["source_view"]["psnr"] > 60
    # geometry of the render against the true alpha/depth, and the mean-image baseline, per bin
    assert (
        0 <= min(nv["by_bin"]["soft_iou"]) <= max(nv["by_bin"]["soft_iou"]) <= 1
        and min(nv["by_bin"]["depth_error"]) > 0
    )
    assert "mean_training_image" in m["tasks"] and m["tasks"]["mean_training_image"]["by_bin"]["psnr"][i0] < 40
    met = art.manifest["metrics"]
    assert met["nvs_margin_vs_input_yaw+30"] == pytest.approx(
        nv["by_bin"]["psnr"][2] - base["by_bin"]["psnr"][2], abs=1e-3
    )
    assert "nvs_margin_vs_input_yaw+0" not in met and "nvs_soft_iou_min" in met
    assert "margin" in (art.path / "report.md").read_text()
    assert {p.split("@")[0] for p in art.parents} == {"psi3d", "eval_analyser"}
    assert evaluate(cfg, p3.ref, registry).version == art.version  # complete → skipped


def test_psi_evaluation_tasks_and_a_motion_blind_psi(world):
    """Ψ straight from Ψ3d ignores motion (zero-initialised cross-attention), so driving it with A's or B's
    image gives the same renders: self and cross-identity scores must coincide."""
    registry, cfg, _, _, ps = world
    art = evaluate(cfg, ps.ref, registry)
    t = json.loads((art.path / "metrics.json").read_text())["tasks"]
    assert set(t) == {
        "self_reenactment",
        "cross_view",
        "cross_identity_driving_view",
        "cross_identity",
        "no_motion",
        "no_motion_driving_view",
        "copy_source",
        "copy_source_driving_view",
        "psi3d_source",
        "psi3d_source_driving_view",
    }
    flat = lambda task, m="psnr": np.ravel(t[task]["per_image"][m]).tolist()  # noqa: E731
    assert flat("cross_view") == pytest.approx(flat("cross_identity"), abs=1e-4)
    assert flat("cross_view") == pytest.approx(flat("no_motion"), abs=1e-4)
    # Ψ at init is Ψ3d: it scores what its starting point scores, everywhere, mouth and eyes included
    for m in ("psnr", "mouth_psnr", "eyes_psnr"):
        assert flat("no_motion", m) == pytest.approx(flat("psi3d_source", m), abs=1e-3), m
    assert flat("cross_identity_driving_view") == pytest.approx(flat("psi3d_source_driving_view"), abs=1e-3)
    # a motion-blind Ψ changes nothing when the driving image changes: the change correlation is exactly 0
    assert set(flat("cross_identity", "change_correlation")) == {0.0}
    # the reenacted head's silhouette is scored against the true alpha; motion-blind: the same head either way
    iou = flat("cross_identity", "soft_iou")
    assert all(0 <= x <= 1 for x in iou) and iou == pytest.approx(flat("cross_view", "soft_iou"), abs=1e-5)
    assert flat("copy_source") != pytest.approx(flat("no_motion"), abs=1e-2)  # the copy is a different baseline
    head = art.manifest["metrics"]
    assert head["cross_id_expression_error_vs_no_motion"] == pytest.approx(1.0, abs=1e-3)
    assert head["cross_id_mouth_psnr_margin_vs_psi3d"] == pytest.approx(0.0, abs=1e-3)
    assert (
        "cross_id_margin_vs_copy_source_min" in head
        and "Reenactment beside its baselines" in (art.path / "report.md").read_text()
    )
    assert t["self_reenactment"]["bins"] == ["driving cam"]
    for g in ("self_reenactment", "cross_identity"):
        assert (art.path / "grids" / f"{g}.png").is_file()
    assert {p.split("@")[0] for p in art.parents} == {"psi", "eval_analyser", "motion_encoder"}


def test_evaluation_refuses_a_checkpoint_of_another_preset(world):
    registry, cfg, samples, p3, _ = world
    # the artifact says it was trained with preset 'small'
    torch.manual_seed(0)
    other = _model_artifact(
        registry, "psi3d", cfg, build_psi(cfg.model, static=True), [samples], preset_in_manifest="small"
    )
    with pytest.raises(EvaluationError, match=r"preset 'tiny'.*preset 'small'") as e:
        evaluate(cfg, other.ref, registry)
    assert other.ref in str(e.value) and "checkpoint.pt" in str(e.value)
    # the checkpoint's architecture differs from the requested preset's (e.g. a changed width)
    wider = load_config("tiny", SMALL + ["model.psi.embed_dim=64"])
    with pytest.raises(EvaluationError, match="embed_dim"):
        evaluate(wider, p3.ref, registry)


def test_evaluation_refuses_other_kinds_and_a_shared_analyser_seed(world):
    registry, cfg, samples, _, _ = world
    with pytest.raises(EvaluationError, match="'psi3d' or 'psi'"):
        evaluate(cfg, samples.ref, registry)
    same = load_config("tiny", SMALL + [f"eval.analyser_seed={cfg.motion_encoder.seed}"])
    with pytest.raises(EvaluationError, match="different seed"):
        analyser_config(same)


def test_evaluation_scores_with_a_given_analyser_and_refuses_another_kind(world):
    """The learning benchmarks hand stage 5 an evaluation analyser trained before (an hour at learn): that one is
    the evaluation's parent, not the one the current config resolves to; an E_mot is not an instrument."""
    from pipeline_tasks.evaluate import train_eval_analyser

    registry, cfg, _, p3, ps = world
    samples = run_analyser_samples_stage(cfg, registry, progress=False)
    own = train_eval_analyser(cfg, samples, registry)
    given = train_eval_analyser(load_config("tiny", SMALL + ["eval.analyser_steps=2"]), samples, registry)
    assert given.version != own.version
    art = evaluate(cfg, p3.ref, registry, analyser=given)
    assert given.ref in art.parents and own.ref not in art.parents
    assert evaluate(cfg, p3.ref, registry).version != art.version  # another instrument, another evaluation
    e_mot = next(registry.resolve(p) for p in ps.parents if p.startswith("motion_encoder@"))
    with pytest.raises(EvaluationError, match="eval_analyser"):
        evaluate(cfg, p3.ref, registry, analyser=e_mot)


def test_ablation_report_compares_two_evaluations_per_yaw_bin(world):
    from pipeline_tasks.ablation import compare, compare_evals

    registry, cfg, _, p3, ps = world
    a = evaluate(cfg, ps.ref, registry)
    ma = json.loads((a.path / "metrics.json").read_text())
    zero = compare(ma, ma)  # an evaluation against itself: every difference is exactly 0
    assert all(d == 0 for t in zero.values() for m in t["metrics"].values() for d in m["difference"])
    # a second Ψ whose motion path is switched on (random cross-attention output projections)
    torch.manual_seed(1)
    psi = build_psi(cfg.model).eval()
    init_psi_from_psi3d(psi, torch.load(p3.path / CHECKPOINT, weights_only=True)["state_dicts"]["psi"])
    with torch.no_grad():
        for name, prm in psi.named_parameters():
            if is_cross_attention_param(name) and name.endswith("weight"):
                prm.normal_(0, 0.05)
    e_mot = [p for p in ps.parents if p.startswith("motion_encoder@")][0]
    other = _model_artifact(registry, "psi", cfg, psi, [p3, e_mot], tag="-motion-on")
    b = evaluate(cfg, other.ref, registry)
    art = compare_evals(cfg, a.ref, b.ref, registry)
    report = (art.path / "report.md").read_text()
    for lab in ("-30°", "+0°", "+30°"):
        assert f"| {lab} |" in report
    comp = json.loads((art.path / "comparison.json").read_text())["tasks"]
    mb = json.loads((b.path / "metrics.json").read_text())["tasks"]
    d = comp["cross_view"]["metrics"]["psnr"]
    expected = (
        np.array(ma["tasks"]["cross_view"]["per_image"]["psnr"]) - np.array(mb["cross_view"]["per_image"]["psnr"])
    ).mean(0)
    assert d["difference"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert (art.path / "plots" / "ablation_vs_yaw.png").is_file()
    assert art.manifest["metrics"]["delta_cross_view_psnr_yaw+0"] == pytest.approx(d["difference"][1], abs=1e-3)


def test_the_evaluation_analyser_takes_its_own_blur_or_e_mots():
    """``eval.analyser_blur_jitter``: None keeps E_mot's blur augmentation (and the analyser's version), a value
    replaces it for the evaluation analyser only."""
    from pipeline_tasks.evaluate import analyser_stage_config

    base = load_config("tiny")
    assert analyser_config(base).motion_encoder.blur_jitter == base.motion_encoder.blur_jitter
    blurred = load_config("tiny", ["eval.analyser_blur_jitter=1.5"])
    assert analyser_config(blurred).motion_encoder.blur_jitter == 1.5
    assert blurred.motion_encoder.blur_jitter == base.motion_encoder.blur_jitter  # E_mot itself is untouched
    assert analyser_stage_config(blurred) != analyser_stage_config(base)
    assert analyser_stage_config(load_config("tiny", ["eval.analyser_blur_jitter=null"])) == analyser_stage_config(base)
