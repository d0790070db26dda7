"""Stage 5: evaluation of ``psi3d`` / ``psi`` on the held-out synthetic benchmark (DESIGN.md §9).

Every answer is known (pipeline_tasks/eval/benchmark_set.py), so the method's claims are numbers:

* ``psi3d`` — **novel view**: Ψ3d(Î_s) rendered at each yaw bin vs the true render of A at that bin
  (with the source expression); baseline ``input_as_prediction`` (the source image itself).
* ``psi`` — **self-reenactment** (A driven by A's own image with expression β_d, target at the
  driving camera θ_d = the driving image), **cross-view** (same, targets at every yaw bin),
  **cross-identity** (A driven by B's image with β_d, against the true render of A with β_d, at θ_d
  and at every yaw bin); baselines ``no_motion`` (Ψ driven by the source's own motion: what it
  renders if reenactment did nothing), ``copy_source`` (the source image) and ``psi3d_source``
  (Ψ3d(source), what Ψ starts from, at the target camera), each at the bins and at θ_d.

Whole-frame PSNR barely sees expression, so reenactment is also scored where expression lives:
PSNR inside the projected mouth and eye regions (models/genhead/regions.py), the expression error
read by the evaluation analyser (beside its floor and no-motion's), and the change correlation —
does Ψ(s, d) − Ψ(s, s) correlate with truth(β_d) − truth(β_s) at the same camera.

Metrics per image: PSNR, SSIM, LPIPS (``eval.lpips_net``; a fixed *random* trunk when the ImageNet
weights are absent — recorded as ``lpips_real_trunk``), expression error (mean |β̂ − β| over the 9
coefficients), gaze error (degrees), pose error (degrees, yaw/pitch distance) and identity similarity
(cosine to the truth). β̂, gaze, identity come from an **evaluation analyser**: the stage-2b
architecture trained on the same ``analyser_samples`` store (stage 1b: several independent
expressions per identity) with another seed (``eval.analyser_seed``; its own artifact kind
``eval_analyser``, so ``motion_encoder@latest`` stays E_mot). Pose comes from a ridge
probe on that analyser's features, fitted on renders of yet other identities at known cameras. Both
measuring instruments have floors, measured on the ground-truth renders and reported beside them.

Artifact ``eval/<version>/``: ``metrics.json`` (every per-image value, per-yaw means, floors),
``report.md``, ``benchmark.json``, ``grids/*.png`` (source / driving / prediction / truth at every
yaw bin), ``plots/metrics_vs_yaw.png``. Headline scalars go to the manifest (and the catalog).
"""

from __future__ import annotations

import json
from typing import Any

import torch

from models.checkpoints import CheckpointMismatchError
from models.genhead.regions import region_masks
from models.motion import load_motion_encoder
from pipeline_tasks import stages
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.images import to_model_images
from pipeline_tasks.eval.benchmark_set import BenchmarkSet
from pipeline_tasks.eval.instruments import Scorer, fit_pose_probe, get_benchmark
from pipeline_tasks.eval.metrics import alpha_iou, change_correlation, masked_depth_error
from pipeline_tasks.eval.report import report_markdown, save_grid, summary_line
from pipeline_tasks.eval.results import EvaluationError, plot_vs_yaw
from pipeline_tasks.eval.scoring import headline_metrics, instrument_floors, task_result
from pipeline_tasks.stage import StageSpec, run_once
from pipeline_tasks.training.device import resolve_device
from pipeline_tasks.training.loop import CHECKPOINT
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "eval"
# v4: soft silhouette IoU of Ψ's reenactments (cross-view, cross-identity); v3: reenactment region PSNR, change
# correlation, copy-source and Ψ3d baselines; v2: novel-view means exclude 0°, geometry
SCHEMA_VERSION = 4
ANALYSER_KIND = "eval_analyser"


# ---------------------------------------------------------------- the evaluation analyser
def analyser_config(cfg: PipelineConfig) -> PipelineConfig:
    """``cfg`` with the motion_encoder section of the evaluation analyser (another seed, synthetic backend)."""
    e = cfg.eval
    if e.analyser_seed == cfg.motion_encoder.seed:
        raise EvaluationError(
            f"eval.analyser_seed ({e.analyser_seed}) equals motion_encoder.seed: the evaluation analyser must be "
            "trained with a different seed from the E_mot used in training losses"
        )
    # an instrument reads identity (identity similarity) and pose (the probe on its features) as well as
    # expression, so its identity head shapes the trunk (measured at tiny: pose floor 11.5° vs 27° detached,
    # expression floor 0.132 vs 0.171); E_mot keeps it detached so its motion embedding stays identity-free
    me = cfg.motion_encoder.model_copy(
        update={
            "seed": e.analyser_seed,
            "backend": "synthetic",
            "pdfgc_weights": None,
            "steps": e.analyser_steps or cfg.motion_encoder.steps,
            "identity_detached": False,
        }
    )
    return cfg.model_copy(update={"motion_encoder": me})


def train_eval_analyser(cfg: PipelineConfig, samples: Artifact | str, registry: ArtifactRegistry) -> Artifact:
    """Train (or reuse) the ``eval_analyser`` artifact on ``samples`` (the stage-2b trainer, another seed)."""
    trainer = stages.spec("motion_encoder")
    cfg2 = analyser_config(cfg)
    samples = stages.resolve(registry, samples, "analyser_samples")
    return run_once(
        registry,
        ANALYSER_KIND,
        analyser_stage_config(cfg),
        [samples],
        ANALYSER_SCHEMA_VERSION,
        lambda w: trainer.train(cfg2, samples, w, None),
    )


def analyser_stage_config(cfg: PipelineConfig) -> dict[str, Any]:
    """What the evaluation analyser's version hashes: E_mot's (with the analyser's section) and its purpose."""
    return {**stages.spec("motion_encoder").config(analyser_config(cfg)), "purpose": "evaluation analyser (stage 5)"}


def _mean_training_image(samples: Artifact, limit: int = 256) -> torch.Tensor:
    """The mean image of (up to ``limit`` identities of) the training store: a trivial baseline, ``[1,3,H,W]``."""
    imgs = gs.open_read(samples.path / "store.zarr")["images"]
    return to_model_images(imgs[: min(limit, imgs.shape[0])]).reshape(-1, 3, *imgs.shape[2:4]).mean(0, keepdim=True)


# ---------------------------------------------------------------- loading the model under test
def _ancestor(registry: ArtifactRegistry, art: Artifact, kind: str) -> Artifact:
    for a in registry.ancestors(art):
        if a.kind == kind:
            return a
    raise EvaluationError(f"{art.ref} ({art.path}) has no '{kind}' ancestor; cannot evaluate it")


def load_model_for_eval(art: Artifact, cfg: PipelineConfig, device):
    """The Ψ3d / Ψ of ``art`` for preset ``cfg``; refuses another preset with a message naming both."""
    saved = art.config.get("preset")
    if saved is not None and saved != cfg.preset:
        raise EvaluationError(
            f"cannot evaluate {art.ref} ({art.path / CHECKPOINT}) with preset '{cfg.preset}': it was trained with "
            f"preset '{saved}'; run the evaluation with --preset {saved}"
        )
    try:
        return stages.load(art, model_cfg=cfg.model, device=device)
    except CheckpointMismatchError as exc:
        raise EvaluationError(f"cannot evaluate {art.ref} with preset '{cfg.preset}': {exc}") from exc


def resolve_model(registry: ArtifactRegistry, model: Artifact | str) -> Artifact:
    ref = model.ref if isinstance(model, Artifact) else model
    kind = ref.partition("@")[0]
    if kind not in ("psi3d", "psi"):
        raise EvaluationError(f"stage 5 evaluates 'psi3d' or 'psi' artifacts, not {ref!r}")
    return stages.resolve(registry, ref, kind)


def stage_config(cfg: PipelineConfig, kind: str, bench: BenchmarkSet) -> dict[str, Any]:
    return {
        **cfg.stage_config("eval", "model"),
        "model_kind": kind,
        "benchmark": {"version": bench.spec.version, "digest": bench.digest()},
    }


# ---------------------------------------------------------------- the stage
def evaluate(cfg: PipelineConfig, model: Artifact | str, registry: ArtifactRegistry | None = None) -> Artifact:
    """Evaluate (or reuse the evaluation of) a ``psi3d`` or ``psi`` artifact → an ``eval`` artifact."""
    registry = registry or ArtifactRegistry()
    art = resolve_model(registry, model)
    device = resolve_device(cfg.device)
    net = load_model_for_eval(art, cfg, device)  # refuse a wrong preset before anything is built
    samples = _ancestor(registry, art, "genhead_samples")
    analyser_samples = stages.spec("analyser_samples").build(cfg, registry, progress=False)
    analyser = train_eval_analyser(cfg, analyser_samples, registry)
    parents = [art, analyser]
    e_mot = None
    if art.kind == "psi":
        e_mot = _ancestor(registry, art, "motion_encoder")
        parents.append(e_mot)
    bench = get_benchmark(cfg)
    return run_once(
        registry,
        KIND,
        stage_config(cfg, art.kind, bench),
        parents,
        SCHEMA_VERSION,
        lambda w: _evaluate(cfg, art, net, analyser, e_mot, bench, device, w, samples, registry),
    )


def _evaluate(
    cfg,
    art: Artifact,
    net,
    analyser_art: Artifact,
    e_mot_art: Artifact | None,
    bench: BenchmarkSet,
    device,
    w: ArtifactWriter,
    samples: Artifact | None = None,
    registry: ArtifactRegistry | None = None,
) -> None:
    analyser = stages.load(analyser_art, device=device)
    probe, probe_info = fit_pose_probe(analyser, cfg, device)
    scorer = Scorer(analyser, probe, cfg.eval.lpips_net, device)
    r = bench.render()
    n, bins = bench.n, bench.yaw_bins
    v = len(bins)
    bin_labels = [f"{y:+g}°" for y in bins]
    yaw_pitch_bins = torch.tensor([[y, 0.0] for y in bins]).repeat(n, 1)  # [n·V, 2] (identity-major)
    drv_yp = torch.rad2deg(bench.driving_yaw_pitch)
    rep = lambda t: t.repeat_interleave(v, 0)  # noqa: E731  per-identity → per (identity, bin)
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    tasks: dict[str, dict] = {}
    b = cfg.eval.batch

    def run_net(source, m_s=None, m_d=None, cams=None, geometry: bool = False, model=None):
        """Ψ's (or ``model``'s) images at ``cams [n,V,25]``; with ``geometry`` also its alpha (neural
        resolution) and depth (upsampled)."""
        model = model or net
        outs, alphas, depths = [], [], []
        res = source.shape[-1]

        def up(x):
            return torch.nn.functional.interpolate(
                x.float().reshape(-1, 1, *x.shape[-2:]), size=(res, res), mode="bilinear", align_corners=False
            ).reshape(*x.shape[:-2], res, res)

        with torch.no_grad():
            for s in range(0, len(source), b):
                sl = slice(s, s + b)
                planes = model(source[sl].to(device)) if m_s is None else model(source[sl].to(device), m_s[sl], m_d[sl])
                out = model.render(planes, cams[sl].to(device), perturb=False)
                outs.append(out["image"].float().clamp(-1, 1).cpu())
                if geometry:
                    alphas.append(out["alpha"].float().cpu())  # native (neural) resolution: see metrics.alpha_iou
                    depths.append(up(out["depth"]).cpu())
        if geometry:
            return torch.cat(outs), torch.cat(alphas), torch.cat(depths)
        return torch.cat(outs)

    tgt_cams = bench.target_cameras[None].expand(n, v, 25)
    grids: dict[str, tuple] = {}
    pseudo_views = None
    if art.kind == "psi3d":
        truth = flat(r["nvs_targets"])
        truth_read = scorer.analyse(truth)
        pred, pred_alpha, pred_depth = run_net(
            r["source"], cams=tgt_cams, geometry=True
        )  # [n, V, 3, H, W], [n, V, 1, H, W]
        known = (rep(bench.source_expression), rep(bench.source_gaze), yaw_pitch_bins)
        true_alpha, true_depth = flat(r["nvs_alpha"]), flat(r["nvs_depth"])
        nv = scorer.score(flat(pred), truth, *known, truth_read)
        nv["soft_iou"] = alpha_iou(flat(pred_alpha), true_alpha)
        nv["depth_error"] = masked_depth_error(flat(pred_depth), true_depth, true_alpha)
        tasks["novel_view"] = task_result(nv, n, bin_labels)
        tasks["input_as_prediction"] = task_result(
            scorer.score(rep(r["source"]), truth, *known, truth_read), n, bin_labels
        )
        if samples is not None:
            mean_img = _mean_training_image(samples).expand(n * v, -1, -1, -1)
            tasks["mean_training_image"] = task_result(scorer.score(mean_img, truth, *known, truth_read), n, bin_labels)
        floors = instrument_floors(truth_read, *known)
        grids["novel_view"] = (r["source"], None, pred, r["nvs_targets"], ["source"])
    else:
        e_mot = load_motion_encoder(e_mot_art, device)
        with torch.no_grad():
            enc = lambda x: torch.cat([e_mot.encode(x[s : s + 32].to(device)) for s in range(0, len(x), 32)])  # noqa: E731
            m_s, m_self, m_cross = enc(r["source"]), enc(r["driving_self"]), enc(r["driving_cross"])
        cams = torch.cat([bench.driving_cameras[:, None], tgt_cams], 1)  # [n, 1+V, 25]: θ_d then the bins
        res = r["source"].shape[-1]
        reg_drv = region_masks(bench.driving_cameras, res)  # where the mouth and the eyes are, per target image
        reg_bins = region_masks(tgt_cams.reshape(-1, 25), res)
        truth_bins = flat(r["reenact_targets"])
        truth_source_expr = flat(r["nvs_targets"])  # the same cameras with the source's own expression
        truth_read = scorer.analyse(truth_bins)
        drv_read = scorer.analyse(r["driving_self"])
        known_bins = (rep(bench.driving_expression), rep(bench.driving_gaze), yaw_pitch_bins)
        known_drv = (bench.driving_expression, bench.driving_gaze, drv_yp)

        def at_driving_view(pred):
            return scorer.score(pred, r["driving_self"], *known_drv, drv_read, regions=reg_drv)

        def at_bins(pred_flat):
            return scorer.score(pred_flat, truth_bins, *known_bins, truth_read, regions=reg_bins)

        pred_self, alpha_self, _ = run_net(r["source"], m_s, m_self, cams, geometry=True)
        pred_cross, alpha_cross, _ = run_net(r["source"], m_s, m_cross, cams, geometry=True)
        true_alpha = flat(r["reenact_alpha"])
        pred_none = run_net(r["source"], m_s, m_s, cams)  # no reenactment: v_d = v_s
        tasks["self_reenactment"] = task_result(at_driving_view(pred_self[:, 0]), n, ["driving cam"])
        cv = at_bins(flat(pred_self[:, 1:]))
        cv["change_correlation"] = change_correlation(
            flat(pred_self[:, 1:]), flat(pred_none[:, 1:]), truth_bins, truth_source_expr
        )
        cv["soft_iou"] = alpha_iou(flat(alpha_self[:, 1:]), true_alpha)  # geometry of the reenacted head
        tasks["cross_view"] = task_result(cv, n, bin_labels)
        tasks["cross_identity_driving_view"] = task_result(at_driving_view(pred_cross[:, 0]), n, ["driving cam"])
        ci = at_bins(flat(pred_cross[:, 1:]))
        ci["change_correlation"] = change_correlation(
            flat(pred_cross[:, 1:]), flat(pred_none[:, 1:]), truth_bins, truth_source_expr
        )
        ci["soft_iou"] = alpha_iou(flat(alpha_cross[:, 1:]), true_alpha)
        tasks["cross_identity"] = task_result(ci, n, bin_labels)
        if cfg.eval.baselines:
            # what Ψ must beat: no reenactment, the source copied, and Ψ3d (what Ψ starts from) at the target camera
            tasks["no_motion"] = task_result(at_bins(flat(pred_none[:, 1:])), n, bin_labels)
            tasks["no_motion_driving_view"] = task_result(at_driving_view(pred_none[:, 0]), n, ["driving cam"])
            tasks["copy_source"] = task_result(at_bins(rep(r["source"])), n, bin_labels)
            tasks["copy_source_driving_view"] = task_result(at_driving_view(r["source"]), n, ["driving cam"])
            p3 = next((a for a in registry.ancestors(art) if a.kind == "psi3d"), None) if registry is not None else None
            if p3 is not None:
                psi3d = stages.load(p3, model_cfg=cfg.model, device=device)
                pred_p3 = run_net(r["source"], cams=cams, model=psi3d)
                tasks["psi3d_source"] = task_result(at_bins(flat(pred_p3[:, 1:])), n, bin_labels)
                tasks["psi3d_source_driving_view"] = task_result(at_driving_view(pred_p3[:, 0]), n, ["driving cam"])
        floors = instrument_floors(truth_read, *known_bins)
        pmv = (
            next((a for a in registry.ancestors(art) if a.kind == "pseudo_mv"), None) if registry is not None else None
        )
        if pmv is not None:
            from pipeline_tasks.eval.pseudo_view_check import pseudo_view_fidelity

            pseudo_views = pseudo_view_fidelity(pmv.path / "store.zarr")
        grids["self_reenactment"] = (
            r["source"],
            r["driving_self"],
            pred_self,
            torch.cat([r["driving_self"][:, None], r["reenact_targets"]], 1),
            ["source", "driving (A)", "driving cam"],
        )
        grids["cross_identity"] = (
            r["source"],
            r["driving_cross"],
            pred_cross,
            torch.cat([r["driving_self"][:, None], r["reenact_targets"]], 1),
            ["source", "driving (B)", "driving cam"],
        )

    k = min(cfg.eval.grid_identities, n)
    for name, (src, drv, pred, truth, first_cols) in grids.items():
        save_grid(
            w.path / "grids" / f"{name}.png",
            src[:k],
            None if drv is None else drv[:k],
            pred[:k],
            truth[:k],
            first_cols + bin_labels,
            bench,
            f"{art.kind} {art.version}: {name.replace('_', ' ')} (rows: prediction / truth)",
        )
    plot_vs_yaw(
        {t: res for t, res in tasks.items() if len(res["bins"]) == v},
        bins,
        w.path / "plots" / "metrics_vs_yaw.png",
        f"{art.kind} {art.ref} on benchmark {bench.digest()}",
    )
    result = {
        "model": art.ref,
        "model_kind": art.kind,
        "preset": cfg.preset,
        "benchmark": {
            "version": bench.spec.version,
            "digest": bench.digest(),
            "identities": n,
            "yaw_bins_degrees": bins,
        },
        "instruments": {
            "analyser": analyser_art.ref,
            "e_mot": e_mot_art.ref if e_mot_art else None,
            "lpips_net": cfg.eval.lpips_net,
            "lpips_real_trunk": bool(scorer.lpips.real_trunk),
            **probe_info,
        },
        "floors": floors,
        "tasks": tasks,
    }
    if pseudo_views is not None:
        result["pseudo_views"] = pseudo_views
    (w.path / "metrics.json").write_text(json.dumps(result, indent=2))
    (w.path / "benchmark.json").write_text(json.dumps(bench.describe(), indent=2))
    headline = headline_metrics(result)
    (w.path / "report.md").write_text(report_markdown(result, art))
    w.metrics.update(headline)
    w.counts.update(
        {
            "identities": n,
            "yaw_bins": v,
            "images_scored": int(sum(len(t["per_image"]["psnr"]) * len(t["bins"]) for t in tasks.values())),
        }
    )
    print(summary_line(result))


ANALYSER_SCHEMA_VERSION = 1  # the layout of a motion_encoder artifact (tests check the two stay equal)
ANALYSER_SPEC = StageSpec(
    kind=ANALYSER_KIND,
    schema_version=ANALYSER_SCHEMA_VERSION,
    sections=("motion_encoder", "eval"),
    parents=("analyser_samples",),
    build=train_eval_analyser,
    config=analyser_stage_config,
    load=load_motion_encoder,
)
SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=("eval", "model"),
    parents=("psi3d|psi", "eval_analyser", "motion_encoder"),  # E_mot only for a Ψ
    build=evaluate,
    config=lambda cfg: cfg.stage_config("eval", "model"),
    summary=report_markdown,
)
evaluate_task = SPEC.task()
