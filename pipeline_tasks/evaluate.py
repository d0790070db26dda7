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
from pathlib import Path
from typing import Any

import torch

from models.checkpoints import CheckpointMismatchError
from models.genhead.regions import region_masks
from models.motion import load_motion_encoder
from pipeline_tasks import stages
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.images import to_model_images
from pipeline_tasks.eval.benchmark_set import BenchmarkSet, BenchmarkSpec, build_benchmark, probe_set
from pipeline_tasks.eval.metrics import alpha_iou, change_correlation, masked_depth_error, masked_psnr, psnr, ssim
from pipeline_tasks.eval.results import METRICS, EvaluationError, plot_vs_yaw
from pipeline_tasks.stage import StageSpec, run_once
from pipeline_tasks.training.device import resolve_device
from pipeline_tasks.training.grid import save_image_grid
from pipeline_tasks.training.loop import CHECKPOINT
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "eval"
# v4: soft silhouette IoU of Ψ's reenactments (cross-view, cross-identity); v3: reenactment region PSNR, change
# correlation, copy-source and Ψ3d baselines; v2: novel-view means exclude 0°, geometry
SCHEMA_VERSION = 4
ANALYSER_KIND = "eval_analyser"
SOURCE_BIN = "+0°"  # the source camera's bin: reconstruction, never inside a novel-view mean


# ---------------------------------------------------------------- benchmark cache (one render per process)
_BENCHMARKS: dict[str, BenchmarkSet] = {}
_PROBES: dict[tuple, tuple] = {}


def get_benchmark(cfg: PipelineConfig) -> BenchmarkSet:
    """The benchmark of ``cfg`` (renders cached per process by digest: the pipeline evaluates twice)."""
    bench = build_benchmark(BenchmarkSpec.from_config(cfg))
    return _BENCHMARKS.setdefault(bench.digest(), bench)


def _probe_images(cfg: PipelineConfig):
    e = cfg.eval
    key = (e.seed + 1, e.probe_identities, e.probe_views, cfg.model.psi.image_resolution)
    if key not in _PROBES:
        _PROBES[key] = probe_set(*key)
    return _PROBES[key]


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


class PoseProbe:
    """Ridge regression from analyser features to camera (yaw, pitch) in degrees, relative to the head."""

    def __init__(self, lam: float = 1.0):
        self.lam = lam

    def fit(self, feats: torch.Tensor, yp_deg: torch.Tensor) -> "PoseProbe":
        f = feats.double()
        self.mu, self.sd = f.mean(0), f.std(0) + 1e-6
        x = torch.cat([(f - self.mu) / self.sd, torch.ones(len(f), 1, dtype=f.dtype)], 1)
        reg = self.lam * torch.eye(x.shape[1], dtype=f.dtype)
        reg[-1, -1] = 0
        self.w = torch.linalg.solve(x.T @ x + reg, x.T @ yp_deg.double())
        return self

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        f = feats.double()
        x = torch.cat([(f - self.mu) / self.sd, torch.ones(len(f), 1, dtype=f.dtype)], 1)
        return (x @ self.w).float()


def fit_pose_probe(analyser, cfg: PipelineConfig, device) -> tuple[PoseProbe, dict[str, float]]:
    """Fit on probe renders; report its error on a quarter of the probe identities held out, then refit on all."""
    imgs, yp, owner = _probe_images(cfg)
    with torch.no_grad():
        feats = torch.cat([analyser.features(imgs[s : s + 64].to(device)).cpu() for s in range(0, len(imgs), 64)])
    yp_deg = torch.rad2deg(yp)
    n_id = int(owner.max()) + 1
    held = owner >= n_id - max(1, n_id // 4)
    probe = PoseProbe().fit(feats[~held], yp_deg[~held])
    err = (probe.predict(feats[held]) - yp_deg[held]).norm(dim=1)
    info = {"pose_probe_heldout_error_deg": float(err.mean()), "pose_probe_images": int(len(imgs))}
    return PoseProbe().fit(feats, yp_deg), info


# ---------------------------------------------------------------- metrics
class Scorer:
    """Per-image metrics of predictions against the truth (all instruments frozen)."""

    def __init__(self, analyser, probe: PoseProbe, lpips_net: str, device):
        from models.losses import LPIPSLoss

        self.analyser, self.probe, self.device = analyser, probe, device
        self.lpips = LPIPSLoss(lpips_net).to(device)

    @torch.no_grad()
    def analyse(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the instruments read from images: expression, gaze, (yaw, pitch) in degrees, identity."""
        x = images.to(self.device).float()
        f = self.analyser.features(x)
        pred_std = self.analyser.motion_head(self.analyser.motion_mlp(f))
        pred = self.analyser.unstandardise(pred_std)
        ident = torch.nn.functional.normalize(self.analyser.identity_mlp(f), dim=-1)
        return {
            "expression": pred["expression"].cpu(),
            "gaze": pred["gaze"].cpu(),
            "pose_deg": self.probe.predict(f.cpu()),
            "identity": ident.cpu(),
        }

    @torch.no_grad()
    def score(
        self,
        pred: torch.Tensor,
        truth: torch.Tensor,
        expression: torch.Tensor,
        gaze: torch.Tensor,
        yaw_pitch_deg: torch.Tensor,
        truth_read: dict | None = None,
        regions: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``pred``/``truth`` ``[M,3,H,W]``; known ``expression [M,9]``, ``gaze [M,2]`` (rad), ``yaw_pitch_deg [M,2]``;
        ``regions``: ``{name: [M,1,H,W]}`` masks (models/genhead/regions.py) → ``<name>_psnr``."""
        pred = pred.float().clamp(-1, 1)
        truth = truth.float()
        a = self.analyse(pred)
        t = truth_read or self.analyse(truth)
        lp = torch.cat(
            [
                self.lpips.lpips(pred[s : s + 32].to(self.device), truth[s : s + 32].to(self.device), normalize=False)
                .reshape(-1)
                .cpu()
                for s in range(0, len(pred), 32)
            ]
        )
        region_psnr = {f"{k}_psnr": masked_psnr(pred, truth, m) for k, m in (regions or {}).items()}
        return {
            "psnr": psnr(pred, truth),
            **region_psnr,
            "ssim": ssim(pred, truth),
            "lpips": lp,
            "expression_error": (a["expression"] - expression).abs().mean(1),
            "gaze_error_deg": torch.rad2deg((a["gaze"] - gaze).abs()).mean(1),
            "pose_error_deg": (a["pose_deg"] - yaw_pitch_deg).norm(dim=1),
            "identity_similarity": (a["identity"] * t["identity"]).sum(1),
        }


def _task_result(per_image: dict[str, torch.Tensor], n: int, labels: list[str]) -> dict[str, Any]:
    """Reshape per-image values ``[n·V]`` → ``[n][V]`` lists, with per-bin means and the mean over
    the bins other than the source view (0°: reconstruction, reported apart under ``source_view``)."""
    v = len(labels)
    keep = [j for j, lab in enumerate(labels) if lab != SOURCE_BIN] if v > 1 else list(range(v))
    out: dict[str, Any] = {
        "bins": labels,
        "per_image": {},
        "by_bin": {},
        "mean": {},
        "mean_excludes": [lab for j, lab in enumerate(labels) if j not in keep],
    }
    if len(keep) < v:
        out["source_view"] = {}
    for k, val in per_image.items():
        arr = val.reshape(n, v).double()
        out["per_image"][k] = arr.tolist()
        out["by_bin"][k] = arr.mean(0).tolist()
        out["mean"][k] = float(arr[:, keep].mean())
        if len(keep) < v:
            out["source_view"][k] = float(arr[:, labels.index(SOURCE_BIN)].mean())
    return out


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
        tasks["novel_view"] = _task_result(nv, n, bin_labels)
        tasks["input_as_prediction"] = _task_result(
            scorer.score(rep(r["source"]), truth, *known, truth_read), n, bin_labels
        )
        if samples is not None:
            mean_img = _mean_training_image(samples).expand(n * v, -1, -1, -1)
            tasks["mean_training_image"] = _task_result(
                scorer.score(mean_img, truth, *known, truth_read), n, bin_labels
            )
        floors = _floors(truth_read, *known)
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
        tasks["self_reenactment"] = _task_result(at_driving_view(pred_self[:, 0]), n, ["driving cam"])
        cv = at_bins(flat(pred_self[:, 1:]))
        cv["change_correlation"] = change_correlation(
            flat(pred_self[:, 1:]), flat(pred_none[:, 1:]), truth_bins, truth_source_expr
        )
        cv["soft_iou"] = alpha_iou(flat(alpha_self[:, 1:]), true_alpha)  # geometry of the reenacted head
        tasks["cross_view"] = _task_result(cv, n, bin_labels)
        tasks["cross_identity_driving_view"] = _task_result(at_driving_view(pred_cross[:, 0]), n, ["driving cam"])
        ci = at_bins(flat(pred_cross[:, 1:]))
        ci["change_correlation"] = change_correlation(
            flat(pred_cross[:, 1:]), flat(pred_none[:, 1:]), truth_bins, truth_source_expr
        )
        ci["soft_iou"] = alpha_iou(flat(alpha_cross[:, 1:]), true_alpha)
        tasks["cross_identity"] = _task_result(ci, n, bin_labels)
        if cfg.eval.baselines:
            # what Ψ must beat: no reenactment, the source copied, and Ψ3d (what Ψ starts from) at the target camera
            tasks["no_motion"] = _task_result(at_bins(flat(pred_none[:, 1:])), n, bin_labels)
            tasks["no_motion_driving_view"] = _task_result(at_driving_view(pred_none[:, 0]), n, ["driving cam"])
            tasks["copy_source"] = _task_result(at_bins(rep(r["source"])), n, bin_labels)
            tasks["copy_source_driving_view"] = _task_result(at_driving_view(r["source"]), n, ["driving cam"])
            p3 = next((a for a in registry.ancestors(art) if a.kind == "psi3d"), None) if registry is not None else None
            if p3 is not None:
                psi3d = stages.load(p3, model_cfg=cfg.model, device=device)
                pred_p3 = run_net(r["source"], cams=cams, model=psi3d)
                tasks["psi3d_source"] = _task_result(at_bins(flat(pred_p3[:, 1:])), n, bin_labels)
                tasks["psi3d_source_driving_view"] = _task_result(at_driving_view(pred_p3[:, 0]), n, ["driving cam"])
        floors = _floors(truth_read, *known_bins)
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
        _grid(
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


def _floors(truth_read: dict, expression, gaze, yaw_pitch_deg) -> dict[str, float]:
    """What the instruments get wrong on the ground truth itself (the best a prediction can score)."""
    return {
        "expression_error": float((truth_read["expression"] - expression).abs().mean()),
        "gaze_error_deg": float(torch.rad2deg((truth_read["gaze"] - gaze).abs()).mean()),
        "pose_error_deg": float((truth_read["pose_deg"] - yaw_pitch_deg).norm(dim=1).mean()),
    }


# ---------------------------------------------------------------- outputs
def _grid(path: Path, src, drv, pred, truth, cols: list[str], bench: BenchmarkSet, title: str) -> None:
    """Per identity two rows: [source, (driving), prediction at each camera] and [source, (driving), truth]."""
    rows, titles = [], []
    for i in range(len(src)):
        lead = [src[i]] + ([drv[i]] if drv is not None else [])
        rows.append(torch.stack(lead + list(pred[i])))
        rows.append(torch.stack(lead + list(truth[i])))
        titles += [f"id {i} pred", f"id {i} truth"]
    save_image_grid(torch.stack(rows), path, col_titles=cols, row_titles=titles, title=title)


PREFIX = {
    "novel_view": "nvs",
    "input_as_prediction": "baseline_input",
    "mean_training_image": "baseline_mean_image",
    "self_reenactment": "self",
    "cross_view": "cross_view",
    "cross_identity_driving_view": "cross_id_driving_view",
    "cross_identity": "cross_id",
    "no_motion": "baseline_no_motion",
    "no_motion_driving_view": "baseline_no_motion_driving_view",
    "copy_source": "baseline_copy_source",
    "copy_source_driving_view": "baseline_copy_source_driving_view",
    "psi3d_source": "baseline_psi3d",
    "psi3d_source_driving_view": "baseline_psi3d_driving_view",
}
REENACT_BASELINES = ("no_motion", "copy_source", "psi3d_source")


def reenactment_margins(result: dict, task: str = "cross_identity") -> dict[str, float]:
    """``task`` against the reenactment baselines: expression error as a fraction of no-motion's, PSNR
    margins over copy-source at the |yaw| ≥ 15° bins (their minimum), mouth/eye PSNR over Ψ3d(source)."""
    t = result["tasks"]
    if task not in t:
        return {}
    res, out, p = t[task], {}, PREFIX.get(task, task)
    nm, cs, p3 = (t.get(b) for b in REENACT_BASELINES)
    if nm and nm["mean"].get("expression_error"):
        out[f"{p}_expression_error_vs_no_motion"] = res["mean"]["expression_error"] / nm["mean"]["expression_error"]
    if cs:
        far = [j for j, lab in enumerate(res["bins"]) if abs(float(lab.rstrip("°"))) >= 15]
        if far:
            out[f"{p}_margin_vs_copy_source_min"] = min(res["by_bin"]["psnr"][j] - cs["by_bin"]["psnr"][j] for j in far)
    if p3:
        for region in ("mouth_psnr", "eyes_psnr"):
            if region in res["mean"] and region in p3["mean"]:
                out[f"{p}_{region}_margin_vs_psi3d"] = res["mean"][region] - p3["mean"][region]
    return out


def headline_metrics(result: dict) -> dict[str, float]:
    """Scalars for the manifest/catalog: every task's mean metrics, and PSNR/LPIPS per yaw bin of the main tasks."""
    out: dict[str, float] = {}
    for t, res in result["tasks"].items():
        p = PREFIX.get(t, t)
        for m, val in res["mean"].items():
            out[f"{p}_{m}"] = round(val, 5)
        if t in ("novel_view", "input_as_prediction", "cross_view", "cross_identity"):
            for j, lab in enumerate(res["bins"]):
                y = lab.rstrip("°")
                for m in ("psnr", "lpips", "soft_iou", "depth_error", "pose_error_deg"):
                    if m in res["by_bin"] and (m in ("psnr", "lpips") or t == "novel_view"):
                        out[f"{p}_{m}_yaw{y}"] = round(res["by_bin"][m][j], 5)
    nv, base = result["tasks"].get("novel_view"), result["tasks"].get("input_as_prediction")
    if nv and base:
        margins = {
            lab: a - c
            for lab, a, c in zip(nv["bins"], nv["by_bin"]["psnr"], base["by_bin"]["psnr"])
            if lab != SOURCE_BIN
        }
        for lab, d in margins.items():
            out[f"nvs_margin_vs_input_yaw{lab.rstrip('°')}"] = round(d, 4)
        out["nvs_margin_vs_input_min"] = round(min(margins.values()), 4) if margins else None
        out["nvs_soft_iou_min"] = round(min(nv["by_bin"]["soft_iou"]), 5)
    for task in ("cross_identity", "cross_view"):
        out.update({k: round(v, 5) for k, v in reenactment_margins(result, task).items()})
    for k, val in (result.get("pseudo_views") or {}).items():
        if isinstance(val, (int, float)):
            out[f"pseudo_views_{k}"] = round(float(val), 5)
    for k, val in result["floors"].items():
        out[f"floor_{k}"] = round(val, 5)
    out["benchmark_digest"] = result["benchmark"]["digest"]
    return out


def _fmt(v: float, m: str) -> str:
    return f"{v:.2f}" if m in ("psnr", "mouth_psnr", "eyes_psnr", "gaze_error_deg", "pose_error_deg") else f"{v:.3f}"


def _table(res: dict) -> list[str]:
    ms = [m for m in METRICS if m in res["by_bin"]]
    lines = ["| bin | " + " | ".join(ms) + " |", "|---" * (len(ms) + 1) + "|"]
    for i, lab in enumerate(res["bins"]):
        lines.append(f"| {lab} | " + " | ".join(_fmt(res["by_bin"][m][i], m) for m in ms) + " |")
    if len(res["bins"]) > 1:
        what = f"mean without {', '.join(res['mean_excludes'])}" if res.get("mean_excludes") else "mean"
        lines.append(f"| **{what}** | " + " | ".join(f"**{_fmt(res['mean'][m], m)}**" for m in ms) + " |")
    return lines


def _margin_table(result: dict) -> list[str]:
    """Ψ3d against every baseline per yaw bin, the margin over copy-input, and the geometry."""
    t = result["tasks"]
    nv, base, mean = t["novel_view"], t["input_as_prediction"], t.get("mean_training_image")
    head = "| bin | Ψ3d PSNR | copy-input PSNR | margin | mean-image PSNR | soft IoU | depth error | pose error ° |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for j, lab in enumerate(nv["bins"]):
        m = nv["by_bin"]
        lines.append(
            f"| {lab}{' (source view: reconstruction)' if lab == SOURCE_BIN else ''} | {m['psnr'][j]:.2f} | "
            f"{base['by_bin']['psnr'][j]:.2f} | {m['psnr'][j] - base['by_bin']['psnr'][j]:+.2f} | "
            f"{mean['by_bin']['psnr'][j] if mean else float('nan'):.2f} | {m['soft_iou'][j]:.3f} | "
            f"{m['depth_error'][j]:.3f} | {m['pose_error_deg'][j]:.1f} |"
        )
    return lines


def _reenact_table(result: dict) -> list[str]:
    """Mean (|yaw| bins, 0° excluded) of the reenactment tasks and their baselines, one row each."""
    t = result["tasks"]
    cols = (
        "psnr",
        "mouth_psnr",
        "eyes_psnr",
        "expression_error",
        "change_correlation",
        "identity_similarity",
        "soft_iou",
    )
    lines = ["| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in ("cross_identity", "cross_view") + REENACT_BASELINES:
        if name in t:
            lines.append(
                f"| {name} | "
                + " | ".join(_fmt(t[name]["mean"][c], c) if c in t[name]["mean"] else "–" for c in cols)
                + " |"
            )
    extra = {**reenactment_margins(result, "cross_identity"), **reenactment_margins(result, "cross_view")}
    if extra:
        lines += ["", "; ".join(f"{k} {v:+.3f}" if "margin" in k else f"{k} {v:.3f}" for k, v in extra.items())]
    return lines


TASK_DOC = {
    "novel_view": "Ψ3d(source) rendered at each yaw bin vs the true render of the source identity and expression.",
    "input_as_prediction": "baseline: the source image itself taken as the prediction at every bin (at 0° it *is* the "
    "truth: identical images, PSNR at its 100 dB ceiling — compare the other bins).",
    "mean_training_image": "baseline: the mean image of the training store taken as the prediction at every bin.",
    "self_reenactment": "A driven by A's own image (expression β_d from B's video), target at the driving camera θ_d.",
    "cross_view": "the same reenactment rendered at every yaw bin vs the true render of A with β_d.",
    "cross_identity_driving_view": "A driven by B's image with β_d, at θ_d, vs the true render of A with β_d.",
    "cross_identity": "A driven by B's image with β_d, at every yaw bin, vs the true render of A with β_d.",
    "no_motion": "baseline: Ψ driven by the source's own motion (v_d = v_s) vs the truth with β_d — "
    "what no reenactment scores.",
    "no_motion_driving_view": "baseline: no reenactment (v_d = v_s), at θ_d.",
    "copy_source": "baseline: the source image itself as the prediction at every bin (vs the truth with β_d).",
    "copy_source_driving_view": "baseline: the source image itself, at θ_d.",
    "psi3d_source": "baseline: Ψ3d(source) — what Ψ starts from — rendered at every bin (vs the truth with β_d).",
    "psi3d_source_driving_view": "baseline: Ψ3d(source) rendered at θ_d.",
}


def report_markdown(result: dict, art: Artifact | None = None) -> str:
    b, ins = result["benchmark"], result["instruments"]
    lines = [
        f"# Evaluation of `{result['model']}` ({result['preset']})",
        "",
        f"Benchmark v{b['version']} `{b['digest']}`: {b['identities']} held-out identities × yaw bins "
        f"{', '.join(f'{y:+g}°' for y in b['yaw_bins_degrees'])} (pipeline_tasks/eval/benchmark_set.py).",
        "",
        f"Instruments: analyser `{ins['analyser']}` (trained with a seed other than E_mot's), pose probe "
        f"(held-out error {ins['pose_probe_heldout_error_deg']:.2f}°), LPIPS {ins['lpips_net']} "
        + (
            "(ImageNet trunk)"
            if ins["lpips_real_trunk"]
            else "(**random trunk**: ImageNet weights absent; compare LPIPS only within this project)"
        )
        + ".",
        "",
        "Floors (instrument error on the ground-truth renders themselves): "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["floors"].items()),
        "",
    ]
    if result["model_kind"] == "psi3d":
        lines += (
            [
                "## Ψ3d beside its baselines",
                "",
                "Margin = Ψ3d PSNR − copy-input PSNR on the same images. Soft IoU = Σ min(α, α̂) / Σ max(α, α̂) of the "
                "rendered alpha against the true one (a uniform fog scores ~0.4); depth error = mean |depth − true| "
                "(scene units, head box 1.3) where the true alpha > 0.5.",
                "",
            ]
            + _margin_table(result)
            + [""]
        )
    else:
        lines += (
            [
                "## Reenactment beside its baselines",
                "",
                "Expression error is read by the evaluation analyser (floor above); mouth/eyes PSNR is inside "
                "the projected mouth and eye regions (models/genhead/regions.py); "
                "change correlation = corr(Ψ(s, d) − Ψ(s, s), truth(β_d) − truth(β_s)) per image at the same camera.",
                "",
            ]
            + _reenact_table(result)
            + [""]
        )
    for t, res in result["tasks"].items():
        lines += [f"## {t.replace('_', ' ')}", "", TASK_DOC.get(t, ""), ""] + _table(res) + [""]
    pv = result.get("pseudo_views")
    if pv:
        lines += [
            "## pseudo views (stage 3) against the truth",
            "",
            "Stage 3's K views of each frame of the synthetic videos vs the true renders at their cameras, beside "
            "the frame itself copied to every view (copy-input).",
            "",
            "| videos | frames | views | PSNR views | PSNR copy-frame | margin | soft IoU views |",
            "|---|---|---|---|---|---|---|",
            f"| {pv['videos']} | {pv['frames']} | {pv['views']} | {pv['psnr_views']:.2f} | "
            f"{pv['psnr_copy_frame']:.2f} | "
            f"{pv['margin_vs_copy_frame']:+.2f} | {pv['soft_iou_views']:.3f} |",
            "",
        ]
    lines += ["## Pictures", ""]
    for g in ("novel_view", "self_reenactment", "cross_identity"):
        if (result["model_kind"] == "psi3d") == (g == "novel_view"):
            lines.append(f"![{g}](grids/{g}.png)")
    lines += ["", "![metrics vs yaw](plots/metrics_vs_yaw.png)", ""]
    if art is not None:
        lines += [f"model under test: `{art.ref}` at `{art.path}`", ""]
    return "\n".join(lines)


def summary_line(result: dict) -> str:
    t = result["tasks"]
    if result["model_kind"] == "psi3d":
        nv, base = t["novel_view"], t["input_as_prediction"]
        per = ", ".join(
            f"{lab} {p:.2f}/{c:.2f}/{iou:.2f}"
            for lab, p, c, iou in zip(
                nv["bins"], nv["by_bin"]["psnr"], base["by_bin"]["psnr"], nv["by_bin"]["soft_iou"]
            )
        )
        return (
            f"eval psi3d: novel-view PSNR {nv['mean']['psnr']:.2f} dB (0° excluded) "
            f"vs copy-input {base['mean']['psnr']:.2f}; "
            f"by yaw (Ψ3d/copy-input/soft IoU): {per}"
        )
    parts = [
        f"{name} PSNR {t[name]['mean']['psnr']:.2f} / expr err {t[name]['mean']['expression_error']:.3f}"
        for name in ("self_reenactment", "cross_view", "cross_identity", "no_motion")
        if name in t
    ]
    return "eval psi: " + "; ".join(parts)


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
