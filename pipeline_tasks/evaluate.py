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
from dataclasses import dataclass
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
from pipeline_tasks.eval.pseudo_view_check import pseudo_view_fidelity
from pipeline_tasks.eval.report import report_markdown, save_grid, summary_line
from pipeline_tasks.eval.results import EvaluationError, plot_vs_yaw
from pipeline_tasks.eval.scoring import (
    blurred_change_ceilings,
    blurred_expression_floors,
    headline_metrics,
    instrument_floors,
    task_result,
)
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
            "blur_jitter": cfg.motion_encoder.blur_jitter if e.analyser_blur_jitter is None else e.analyser_blur_jitter,
            "identity_detached": False,
        }
    )
    return cfg.model_copy(update={"motion_encoder": me})


def train_eval_analyser(cfg: PipelineConfig, samples: Artifact | str, registry: ArtifactRegistry) -> Artifact:
    """Train (or reuse) the ``eval_analyser`` artifact on ``samples`` (the stage-2b trainer, another seed)."""
    trainer = stages.spec("motion_encoder")
    cfg2 = analyser_config(cfg)
    samples = stages.resolve(registry, samples, "analyser_samples", cfg.preset)
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


def resolve_model(registry: ArtifactRegistry, model: Artifact | str, preset: str | None = None) -> Artifact:
    ref = model.ref if isinstance(model, Artifact) else model
    kind = ref.partition("@")[0]
    if kind not in ("psi3d", "psi"):
        raise EvaluationError(f"stage 5 evaluates 'psi3d' or 'psi' artifacts, not {ref!r}")
    return stages.resolve(registry, ref, kind, preset)


def stage_config(cfg: PipelineConfig, kind: str, bench: BenchmarkSet) -> dict[str, Any]:
    return {
        **cfg.stage_config("eval", "model"),
        "model_kind": kind,
        "benchmark": {"version": bench.spec.version, "digest": bench.digest()},
    }


# ---------------------------------------------------------------- the stage
def evaluate(
    cfg: PipelineConfig,
    model: Artifact | str,
    registry: ArtifactRegistry | None = None,
    analyser: Artifact | None = None,
) -> Artifact:
    """Evaluate (or reuse the evaluation of) a ``psi3d`` or ``psi`` artifact → an ``eval`` artifact.

    ``analyser``: a finished ``eval_analyser`` to score with (the learning benchmarks reuse one whose config
    matches, made by earlier code); by default the one this code and preset resolve to, trained if needed."""
    registry = registry or ArtifactRegistry()
    art = resolve_model(registry, model, cfg.preset)
    device = resolve_device(cfg.device)
    net = load_model_for_eval(art, cfg, device)  # refuse a wrong preset before anything is built
    samples = _ancestor(registry, art, "genhead_samples")
    if analyser is None:
        analyser_samples = stages.spec("analyser_samples").build(cfg, registry, progress=False)
        analyser = train_eval_analyser(cfg, analyser_samples, registry)
    elif analyser.kind != ANALYSER_KIND:
        raise EvaluationError(f"stage 5 scores with an '{ANALYSER_KIND}' artifact, not {analyser.ref}")
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


@dataclass
class _Run:
    """What every task of one evaluation shares: the benchmark's renders, the scorer, the model under test."""

    cfg: PipelineConfig
    bench: BenchmarkSet
    renders: dict[str, torch.Tensor]
    scorer: Scorer
    net: Any
    device: Any

    def __post_init__(self):
        self.n, self.bins = self.bench.n, self.bench.yaw_bins
        self.v = len(self.bins)
        self.bin_labels = [f"{y:+g}°" for y in self.bins]
        self.yaw_pitch_bins = torch.tensor([[y, 0.0] for y in self.bins]).repeat(self.n, 1)  # [n·V, 2] identity-major
        self.tgt_cams = self.bench.target_cameras[None].expand(self.n, self.v, 25)

    def rep(self, t: torch.Tensor) -> torch.Tensor:
        """per identity → per (identity, bin)"""
        return t.repeat_interleave(self.v, 0)

    @staticmethod
    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *x.shape[2:])

    def result(self, per_image: dict[str, torch.Tensor], labels: list[str] | None = None) -> dict[str, Any]:
        return task_result(per_image, self.n, self.bin_labels if labels is None else labels)

    def run_net(self, source, m_s=None, m_d=None, cams=None, geometry: bool = False, model=None):
        """Ψ's (or ``model``'s) images at ``cams [n,V,25]``; with ``geometry`` also its alpha (neural
        resolution) and depth (upsampled)."""
        model = model or self.net
        outs, alphas, depths = [], [], []
        res, b, device = source.shape[-1], self.cfg.eval.batch, self.device

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


def _novel_view_tasks(run: _Run, samples: Artifact | None) -> tuple[dict, dict, dict]:
    """Ψ3d: novel views at the yaw bins (with geometry) beside copy-input and the mean training image."""
    r, bench, scorer, flat = run.renders, run.bench, run.scorer, run.flat
    truth = flat(r["nvs_targets"])
    truth_read = scorer.analyse(truth)
    pred, pred_alpha, pred_depth = run.run_net(r["source"], cams=run.tgt_cams, geometry=True)  # [n, V, …]
    known = (run.rep(bench.source_expression), run.rep(bench.source_gaze), run.yaw_pitch_bins)
    true_alpha, true_depth = flat(r["nvs_alpha"]), flat(r["nvs_depth"])
    nv = scorer.score(flat(pred), truth, *known, truth_read)
    nv["soft_iou"] = alpha_iou(flat(pred_alpha), true_alpha)
    nv["depth_error"] = masked_depth_error(flat(pred_depth), true_depth, true_alpha)
    tasks = {
        "novel_view": run.result(nv),
        "input_as_prediction": run.result(scorer.score(run.rep(r["source"]), truth, *known, truth_read)),
    }
    if samples is not None:
        mean_img = _mean_training_image(samples).expand(run.n * run.v, -1, -1, -1)
        tasks["mean_training_image"] = run.result(scorer.score(mean_img, truth, *known, truth_read))
    grids = {"novel_view": (r["source"], None, pred, r["nvs_targets"], ["source"])}
    return tasks, instrument_floors(truth_read, *known), grids


class _Reenactment:
    """Ψ: reenactment of each benchmark source by its own driving image (self) and another identity's (cross),
    at the driving camera and at every yaw bin, and the baselines Ψ must beat."""

    def __init__(self, run: _Run, e_mot_art: Artifact):
        r, bench, scorer, device = run.renders, run.bench, run.scorer, run.device
        self.run = run
        e_mot = load_motion_encoder(e_mot_art, device)
        with torch.no_grad():

            def enc(x):
                return torch.cat([e_mot.encode(x[s : s + 32].to(device)) for s in range(0, len(x), 32)])

            self.m_s, self.m_self, self.m_cross = enc(r["source"]), enc(r["driving_self"]), enc(r["driving_cross"])
        self.cams = torch.cat([bench.driving_cameras[:, None], run.tgt_cams], 1)  # [n, 1+V, 25]: θ_d, then the bins
        res = r["source"].shape[-1]
        self.reg_drv = region_masks(bench.driving_cameras, res)  # where the mouth and the eyes are, per target image
        self.reg_bins = region_masks(run.tgt_cams.reshape(-1, 25), res)
        self.truth_bins = run.flat(r["reenact_targets"])
        self.truth_source_expr = run.flat(r["nvs_targets"])  # the same cameras with the source's own expression
        self.truth_read = scorer.analyse(self.truth_bins)
        self.drv_read = scorer.analyse(r["driving_self"])
        self.known_bins = (run.rep(bench.driving_expression), run.rep(bench.driving_gaze), run.yaw_pitch_bins)
        self.known_drv = (bench.driving_expression, bench.driving_gaze, torch.rad2deg(bench.driving_yaw_pitch))

    def at_driving_view(self, pred):
        r = self.run.renders
        return self.run.scorer.score(pred, r["driving_self"], *self.known_drv, self.drv_read, regions=self.reg_drv)

    def at_bins(self, pred_flat):
        return self.run.scorer.score(
            pred_flat, self.truth_bins, *self.known_bins, self.truth_read, regions=self.reg_bins
        )

    def task_at_bins(self, pred, pred_none, alpha) -> dict[str, Any]:
        """``pred [n, 1+V, …]`` scored at the bins, with its change correlation against no motion and its IoU."""
        run, flat = self.run, self.run.flat
        scores = self.at_bins(flat(pred[:, 1:]))
        scores["change_correlation"] = change_correlation(
            flat(pred[:, 1:]), flat(pred_none[:, 1:]), self.truth_bins, self.truth_source_expr
        )
        scores["soft_iou"] = alpha_iou(flat(alpha[:, 1:]), run.flat(run.renders["reenact_alpha"]))
        return run.result(scores)

    def tasks(self) -> tuple[dict, dict]:
        run, r = self.run, self.run.renders
        pred_self, alpha_self, _ = run.run_net(r["source"], self.m_s, self.m_self, self.cams, geometry=True)
        pred_cross, alpha_cross, _ = run.run_net(r["source"], self.m_s, self.m_cross, self.cams, geometry=True)
        self.pred_none = run.run_net(r["source"], self.m_s, self.m_s, self.cams)  # no reenactment: v_d = v_s
        drv = ["driving cam"]
        tasks = {
            "self_reenactment": run.result(self.at_driving_view(pred_self[:, 0]), drv),
            "cross_view": self.task_at_bins(pred_self, self.pred_none, alpha_self),
            "cross_identity_driving_view": run.result(self.at_driving_view(pred_cross[:, 0]), drv),
            "cross_identity": self.task_at_bins(pred_cross, self.pred_none, alpha_cross),
        }
        truth = torch.cat([r["driving_self"][:, None], r["reenact_targets"]], 1)
        grids = {
            "self_reenactment": (
                r["source"],
                r["driving_self"],
                pred_self,
                truth,
                ["source", "driving (A)", "driving cam"],
            ),
            "cross_identity": (
                r["source"],
                r["driving_cross"],
                pred_cross,
                truth,
                ["source", "driving (B)", "driving cam"],
            ),
        }
        return tasks, grids

    def baselines(self, psi3d_art: Artifact | None) -> dict[str, dict]:
        """What Ψ must beat: no reenactment, the source copied, and Ψ3d (what Ψ starts from) at the target camera."""
        run, r, flat, drv = self.run, self.run.renders, self.run.flat, ["driving cam"]
        tasks = {
            "no_motion": run.result(self.at_bins(flat(self.pred_none[:, 1:]))),
            "no_motion_driving_view": run.result(self.at_driving_view(self.pred_none[:, 0]), drv),
            "copy_source": run.result(self.at_bins(run.rep(r["source"]))),
            "copy_source_driving_view": run.result(self.at_driving_view(r["source"]), drv),
        }
        if psi3d_art is not None:
            psi3d = stages.load(psi3d_art, model_cfg=run.cfg.model, device=run.device)
            pred_p3 = run.run_net(r["source"], cams=self.cams, model=psi3d)
            tasks["psi3d_source"] = run.result(self.at_bins(flat(pred_p3[:, 1:])))
            tasks["psi3d_source_driving_view"] = run.result(self.at_driving_view(pred_p3[:, 0]), drv)
        return tasks


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
    run = _Run(cfg, bench, bench.render(), scorer, net, device)
    ancestors: dict[str, Artifact] = {}
    for a in registry.ancestors(art) if registry is not None else []:
        ancestors.setdefault(a.kind, a)  # the nearest of each kind
    pseudo_views, ceilings = None, {}
    if art.kind == "psi3d":
        tasks, floors, grids = _novel_view_tasks(run, samples)
    else:
        reenact = _Reenactment(run, e_mot_art)
        tasks, grids = reenact.tasks()
        if cfg.eval.baselines:
            tasks.update(reenact.baselines(ancestors.get("psi3d")))
        floors = instrument_floors(reenact.truth_read, *reenact.known_bins)
        floors.update(blurred_expression_floors(scorer, reenact.truth_bins, reenact.known_bins[0]))
        ceilings = blurred_change_ceilings(reenact.truth_bins, reenact.truth_source_expr)
        if "pseudo_mv" in ancestors:
            pseudo_views = pseudo_view_fidelity(ancestors["pseudo_mv"].path / "store.zarr")
    result = {
        "model": art.ref,
        "model_kind": art.kind,
        "preset": cfg.preset,
        "benchmark": {
            "version": bench.spec.version,
            "digest": bench.digest(),
            "identities": run.n,
            "yaw_bins_degrees": run.bins,
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
    if ceilings:
        result["ceilings"] = ceilings
    if pseudo_views is not None:
        result["pseudo_views"] = pseudo_views
    _write_outputs(w, run, art, result, grids)


def _write_outputs(w: ArtifactWriter, run: _Run, art: Artifact, result: dict, grids: dict) -> None:
    """The grids, the metric-by-yaw plot, metrics.json, benchmark.json, report.md and the headline metrics."""
    bench, tasks = run.bench, result["tasks"]
    k = min(run.cfg.eval.grid_identities, run.n)
    for name, (src, drv, pred, truth, first_cols) in grids.items():
        save_grid(
            w.path / "grids" / f"{name}.png",
            src[:k],
            None if drv is None else drv[:k],
            pred[:k],
            truth[:k],
            first_cols + run.bin_labels,
            bench,
            f"{art.kind} {art.version}: {name.replace('_', ' ')} (rows: prediction / truth)",
        )
    plot_vs_yaw(
        {t: res for t, res in tasks.items() if len(res["bins"]) == run.v},
        run.bins,
        w.path / "plots" / "metrics_vs_yaw.png",
        f"{art.kind} {art.ref} on benchmark {bench.digest()}",
    )
    (w.path / "metrics.json").write_text(json.dumps(result, indent=2))
    (w.path / "benchmark.json").write_text(json.dumps(bench.describe(), indent=2))
    (w.path / "report.md").write_text(report_markdown(result, art))
    w.metrics.update(headline_metrics(result))
    w.counts.update(
        {
            "identities": run.n,
            "yaw_bins": run.v,
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
