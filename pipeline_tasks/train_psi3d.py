"""Stage 2a: train Ψ3d (Ψ with motion off) on GenHead samples (DESIGN.md §1).

One sample: an identity and two of its views p ≠ q; Ψ3d(Ī(θ_p)) → tri-plane → render at θ_q
(head-relative cameras, DESIGN.md §2), compared with Ī(θ_q), its alpha and depth by the official
foreground/background loss structure (``PsiObjective``). The last ``val_identities`` identities
of the store are held out: validation renders them (pose 0) from the frontal camera and at every
yaw bin of ``eval.yaw_bins_degrees`` with the true alpha and depth, and reports per bin PSNR,
LPIPS, soft silhouette IoU, masked depth error and the shortcut diagnostics (PSNR of the
background alone, mean alpha inside / outside the true mask) beside two baselines measured on the same
images — the input image copied to every bin and the mean training image. The 0° bin is
reconstruction, reported apart and never inside a novel-view mean. The published checkpoint holds
the EMA weights; ``learning_curves.png`` shows the per-bin curves against the baselines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.checkpoints import load_checkpoint
from models.config import ModelConfig
from models.genhead.regions import region_masks
from models.psi import build_psi
from models.psi.network import Psi
from pipeline_tasks import stages
from pipeline_tasks.config import PipelineConfig, cosine_lr
from pipeline_tasks.data.genhead_views import GenHeadViews, draw_views, split_identities
from pipeline_tasks.data.images import to_model_images
from pipeline_tasks.eval.benchmark_set import NovelViewSet
from pipeline_tasks.eval.metrics import alpha_iou, change_correlation, masked_depth_error, masked_psnr, psnr
from pipeline_tasks.stage import StageSpec, run_once
from pipeline_tasks.training.distributed import SINGLE, DistContext, launch
from pipeline_tasks.training.grid import save_image_grid
from pipeline_tasks.training.loop import CHECKPOINT, publish_trained
from pipeline_tasks.training.objective import PsiObjective
from pipeline_tasks.training.trainer import Trainer
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "psi3d"
SCHEMA_VERSION = 2  # v2: head-relative cameras, loss_recon_v2 structure, per-bin validation


def stage_config(cfg: PipelineConfig) -> dict:
    return {**cfg.stage_config("psi3d", "model", "device"), "val_yaw_bins_degrees": list(cfg.eval.yaw_bins_degrees)}


def train_psi3d(
    cfg: PipelineConfig,
    samples: Artifact | str,
    registry: ArtifactRegistry | None = None,
    stop_after: int | None = None,
) -> Artifact:
    """Train (or reuse) the ``psi3d`` artifact for ``samples`` (a ``genhead_samples`` artifact or ref)."""
    registry = registry or ArtifactRegistry()
    samples = stages.resolve(registry, samples, "genhead_samples", cfg.preset)
    gs.validate(samples.path / "store.zarr")
    return run_once(
        registry,
        KIND,
        stage_config(cfg),
        [samples],
        SCHEMA_VERSION,
        lambda w: (
            launch(KIND, cfg, [samples], w, stop_after, cfg.psi3d.nproc_per_node)
            if cfg.psi3d.nproc_per_node > 1 or cfg.distributed.nnodes > 1
            else _train(cfg, samples, w, stop_after)
        ),
    )


def novel_mean(values: list[float], bins: list[float]) -> float:
    """Mean over the bins other than 0° (there the input *is* the target: reconstruction, not a novel view)."""
    off = [v for v, b in zip(values, bins) if b != 0]
    return float(np.mean(off)) if off else float("nan")


def _region_masks(cameras: torch.Tensor, b: int, res: int) -> dict[str, torch.Tensor]:
    """Mouth and eye masks of the ``[V, 25]`` bin cameras, repeated for ``b`` identities: ``{name: [b·V, 1, H, W]}``."""
    return {
        k: m[None].expand(b, *m.shape).reshape(-1, *m.shape[1:]) for k, m in region_masks(cameras.cpu(), res).items()
    }


@torch.no_grad()
def baselines(views: NovelViewSet, mean_image: torch.Tensor) -> dict[str, list[float]]:
    """Per-bin PSNR (whole image, mouth, eyes) of copying the input to every bin and of the mean training image."""
    v, res = len(views.yaw_bins), views.source.shape[-1]
    masks = region_masks(views.cameras.cpu(), res)
    out: dict[str, list[float]] = {}
    for name, pred in (("input", views.source), ("mean_image", mean_image.expand_as(views.source))):
        out[f"psnr_{name}"] = [float(psnr(pred, views.targets[:, j]).mean()) for j in range(v)]
        for region, m in masks.items():
            out[f"{region}_psnr_{name}"] = [
                float(masked_psnr(pred, views.targets[:, j], m[j : j + 1].expand(views.n, -1, -1, -1)).nanmean())
                for j in range(v)
            ]
    return out


@torch.no_grad()
def validate_views(psi: Psi, views: NovelViewSet, device, lpips_fn, batch: int = 8) -> dict[str, list[float]]:
    """Per-bin metrics of ``psi`` on a :class:`NovelViewSet`: PSNR (whole image, mouth and eye regions), LPIPS,
    soft IoU, masked depth error, and — where the set has neutral renders — ``expression_change``: the
    correlation of Ψ3d(input) − Ψ3d(neutral input) with truth − neutral truth at each bin, over the
    identities with a non-neutral expression (1: the expression is reconstructed; 0: a model that renders
    every face neutral)."""
    was_training = psi.training
    psi.eval()
    v, res = len(views.yaw_bins), views.source.shape[-1]
    cams = views.cameras.to(device)
    per: dict[str, list[torch.Tensor]] = {
        k: []
        for k in (
            "psnr",
            "mouth_psnr",
            "eyes_psnr",
            "lpips",
            "soft_iou",
            "depth_error",
            "background_psnr",
            "alpha_inside",
            "alpha_outside",
        )
    }
    change = views.neutral_source is not None and bool(views.expressive.any())
    if change:
        per["expression_change"] = []
    for i in range(0, views.n, batch):
        src = views.source[i : i + batch].to(device)
        b = len(src)
        out = psi.render(psi(src), cams[None].expand(b, v, 25), perturb=False)
        img = out["image"].float().clamp(-1, 1).reshape(b * v, 3, res, res)
        tgt = views.targets[i : i + batch].to(device).reshape(b * v, 3, res, res)

        def up(x):
            return F.interpolate(
                x.float().reshape(b * v, 1, *x.shape[-2:]), size=(res, res), mode="bilinear", align_corners=False
            )

        a_true = views.alpha[i : i + batch].to(device).reshape(b * v, 1, res, res)
        d_true = views.depth[i : i + batch].to(device).reshape(b * v, 1, res, res)
        per["psnr"].append(psnr(img, tgt).reshape(b, v))
        for region, m in _region_masks(views.cameras, b, res).items():
            per[f"{region}_psnr"].append(masked_psnr(img, tgt, m.to(device)).reshape(b, v))
        if change:
            expressive = views.expressive[i : i + batch].to(device)
            flat = psi.render(
                psi(views.neutral_source[i : i + batch].to(device)), cams[None].expand(b, v, 25), perturb=False
            )
            corr = change_correlation(
                img,
                flat["image"].float().clamp(-1, 1).reshape(b * v, 3, res, res),
                tgt,
                views.neutral_targets[i : i + batch].to(device).reshape(b * v, 3, res, res),
            ).reshape(b, v)
            per["expression_change"].append(torch.where(expressive[:, None], corr, torch.full_like(corr, float("nan"))))
        per["lpips"].append(torch.stack([lpips_fn(img[j::v], tgt[j::v]) for j in range(v)]).reshape(1, v).expand(b, v))
        per["soft_iou"].append(
            alpha_iou(out["alpha"].reshape(b * v, 1, *out["alpha"].shape[-2:]), a_true).reshape(b, v)
        )
        per["depth_error"].append(masked_depth_error(up(out["depth"]), d_true, a_true).reshape(b, v))
        # is the 2D shortcut closed? the background alone must not reproduce the target, the alpha must be the head
        bg = F.interpolate(
            out["background_raw"].float().reshape(b * v, 3, *out["background_raw"].shape[-2:]),
            size=(res, res),
            mode="bilinear",
            align_corners=False,
        )
        per["background_psnr"].append(psnr(bg, tgt).reshape(b, v))
        a_pred, inside = up(out["alpha"]).flatten(1), (a_true > 0.5).float().flatten(1)
        per["alpha_inside"].append(((a_pred * inside).sum(1) / inside.sum(1).clamp_min(1)).reshape(b, v))
        per["alpha_outside"].append(((a_pred * (1 - inside)).sum(1) / (1 - inside).sum(1).clamp_min(1)).reshape(b, v))
    psi.train(was_training)
    return {k: [float(x) for x in torch.cat(val).nanmean(0)] for k, val in per.items()}


def summarise(metrics: dict[str, list[float]], base: dict[str, list[float]], bins: list[float]) -> dict[str, float]:
    """Scalars for logs and the manifest: per-bin values, the novel-view means and margins over copy-input."""
    out: dict[str, float] = {}
    for k, vals in {**metrics, **base}.items():
        for b, x in zip(bins, vals):
            out[f"{k}_yaw{b:+g}"] = x
    margins = [m - c for m, c in zip(metrics["psnr"], base["psnr_input"])]
    novel = [x for x, b in zip(margins, bins) if b != 0]
    out.update(
        {
            "psnr_novel": novel_mean(metrics["psnr"], bins),
            "psnr_input_novel": novel_mean(base["psnr_input"], bins),
            "psnr_mean_image_novel": novel_mean(base["psnr_mean_image"], bins),
            "margin_vs_input_novel": novel_mean(margins, bins),
            "margin_vs_input_min": float(min(novel)) if novel else float("nan"),
            "soft_iou_min": float(min(metrics["soft_iou"])),
            "depth_error_novel": novel_mean(metrics["depth_error"], bins),
            "psnr_reconstruction_yaw0": float(metrics["psnr"][bins.index(0.0)]) if 0.0 in bins else float("nan"),
            "mouth_psnr_novel": novel_mean(metrics["mouth_psnr"], bins),
            "eyes_psnr_novel": novel_mean(metrics["eyes_psnr"], bins),
            "mouth_psnr_input_novel": novel_mean(base["mouth_psnr_input"], bins),
            "mouth_psnr_mean_image_novel": novel_mean(base["mouth_psnr_mean_image"], bins),
            "background_psnr_novel": novel_mean(metrics["background_psnr"], bins),
            "alpha_inside_mean": float(np.mean(metrics["alpha_inside"])),
            "alpha_outside_mean": float(np.mean(metrics["alpha_outside"])),
        }
    )
    if "expression_change" in metrics:
        out["expression_change_novel"] = novel_mean(metrics["expression_change"], bins)
        out["expression_change_yaw0"] = (
            float(metrics["expression_change"][bins.index(0.0)]) if 0.0 in bins else float("nan")
        )
    return out


def plot_learning_curves(
    history: list[dict], base: dict[str, list[float]], bins: list[float], path: Path, title: str
) -> None:
    """Per-bin validation PSNR (solid) against copy-input (dashed) and soft IoU per bin, over steps."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    cmap = plt.get_cmap("coolwarm")
    for j, b in enumerate(bins):
        colour = cmap(j / max(len(bins) - 1, 1))
        axes[0].plot(steps, [h["psnr"][j] for h in history], marker=".", color=colour, label=f"{b:+g}°")
        if b != 0:  # at 0° copy-input *is* the truth (100 dB): reconstruction, not a novel view
            axes[0].axhline(base["psnr_input"][j], color=colour, ls="--", lw=0.8)
            axes[1].plot(
                steps,
                [h["psnr"][j] - base["psnr_input"][j] for h in history],
                marker=".",
                color=colour,
                label=f"{b:+g}°",
            )
        axes[2].plot(steps, [h["soft_iou"][j] for h in history], marker=".", color=colour, label=f"{b:+g}°")
    axes[0].set_title("held-out PSNR by yaw bin (dashed: copy-input)", fontsize=9)
    axes[1].set_title("margin over copy-input (dB; 0° has none)", fontsize=9)
    axes[1].axhline(0, color="k", lw=0.8)
    axes[2].set_title("soft silhouette IoU", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[2].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


class Psi3dTrainer(Trainer):
    """Stage 2a: Ψ3d (Ψ with the motion path off) from one source view to another view of the same head."""

    kind = KIND
    model_key = "psi"
    samples = True

    def __init__(self, cfg: PipelineConfig, samples: Artifact, w: ArtifactWriter, stop_after, ddp=SINGLE):
        super().__init__(cfg, cfg.psi3d, w, stop_after, ddp)
        self.samples_art = samples

    def prepare(self) -> None:
        cfg, tc, samples = self.cfg, self.tc, self.samples_art
        data = self.data = GenHeadViews(samples.path / "store.zarr")
        if data.resolution != cfg.model.psi.image_resolution:
            raise ValueError(
                f"{samples.ref}: images are {data.resolution}² but preset {cfg.preset!r} trains Ψ3d at "
                f"{cfg.model.psi.image_resolution}²; regenerate genhead_samples with this preset"
            )
        if data.views < 2:
            raise ValueError(f"{samples.ref}: Ψ3d needs ≥ 2 views per identity, the store has {data.views}")
        self.train_ids, self.val_ids = split_identities(data.n, tc.val_identities)
        data.mean_train_image = to_model_images(
            data.get("images", self.train_ids[:256]).reshape(-1, data.resolution, data.resolution, 3)
        ).mean(0, keepdim=True)

    def build_model(self):
        return build_psi(self.cfg.model, static=True).to(self.device)

    def build_objective(self):
        return PsiObjective(self.cfg.model, self.tc.losses, lr=self.tc.lr).to(self.device)

    def sampler_items(self) -> np.ndarray:
        return self.train_ids

    def after_setup(self) -> None:
        tc = self.tc
        self.use_depth = tc.losses.depth.weight > 0
        self.last_step_bins: dict[str, list[float]] | None = None
        draw_views(
            np.random.default_rng(0), 1, self.data.views, tc.targets_per_source
        )  # fails early on an impossible K
        self.yaw_bins = [float(y) for y in self.cfg.eval.yaw_bins_degrees]
        self.views = self.data.novel_view_set(self.val_ids, self.yaw_bins) if self.ddp.is_main else None
        self.base = baselines(self.views, self.data.mean_train_image) if self.views is not None else None

    def train_step(self, step: int) -> dict[str, float]:
        tc, data, sampler, k_targets = self.tc, self.data, self.sampler, self.tc.targets_per_source
        ids = sampler.next_batch()
        frontal = data.most_frontal_view(ids) if tc.frontal_source_p > 0 else None
        p, q = draw_views(
            sampler.rng, len(ids), data.views, k_targets, frontal, tc.frontal_source_p, tc.source_view_target_p
        )  # q ≠ p, except the reconstruction targets (source_view_target_p)
        ids, p, q = self.ddp.shard(ids, p, q)  # this rank's part of the global batch
        src, tgt, alpha, depth, cams = data.pairs(ids, p, q, self.device)
        out = self.model.render(self.net(src), cams, generator=self.gen)
        if k_targets > 1:  # [B, K, …] → [B·K, …]: every (source, target view) pair is one sample of the objective
            out, tgt, alpha, depth, cams = (
                {k: v.flatten(0, 1) for k, v in out.items()},
                *(x.flatten(0, 1) for x in (tgt, alpha, depth, cams)),
            )
        loss, log = self.objective.generator_loss(
            out,
            tgt,
            alpha,
            cams,
            torch.ones(len(tgt), dtype=torch.bool),
            step,
            target_depth=depth if self.use_depth else None,
        )
        lr = cosine_lr(tc.lr, step, tc.steps, tc.lr_final_fraction)  # a function of the step: resumes exactly
        self.optimise(loss, step, lr)
        log.update(self.objective.discriminator_step(out, tgt, cams, cams, step))
        self.ddp.average_parameters(self.objective.discriminator)
        log.pop("real_fraction", None)
        return {"loss": log.pop("total"), **log, "lr": lr}

    def validate(self, step: int) -> dict[str, float]:
        m = validate_views(self.ema.module, self.views, self.device, self.objective.lpips)
        # the loop validates at the last step: finish() reuses it rather than rendering the same views again
        self.last_step_bins = m if step == self.tc.steps else None
        return summarise(m, self.base, self.yaw_bins)

    @torch.no_grad()
    def sample(self, step: int) -> None:
        model, views, yaw_bins, device = self.ema.module.eval(), self.views, self.yaw_bins, self.device
        k = min(4, views.n)
        v = len(yaw_bins)
        src = views.source[:k].to(device)
        out = model.render(model(src), views.cameras.to(device)[None].expand(k, v, 25), perturb=False)
        img = out["image"].clamp(-1, 1).cpu()
        alpha = (
            F.interpolate(
                out["alpha"].reshape(k * v, 1, *out["alpha"].shape[-2:]).float(),
                size=src.shape[-2:],
                mode="bilinear",
                align_corners=False,
            )
            .reshape(k, v, 1, *src.shape[-2:])
            .cpu()
        )
        rows = []
        for i in range(k):
            rows += [
                torch.cat([src[i : i + 1].cpu(), img[i]]),
                torch.cat([src[i : i + 1].cpu(), views.targets[i]]),
                torch.cat([torch.zeros_like(src[i : i + 1].cpu()) - 1, alpha[i].expand(-1, 3, -1, -1) * 2 - 1]),
            ]
        cols = ["input"] + [f"{b:+g}°" for b in yaw_bins]
        titles = [t for i in range(k) for t in (f"id {int(self.val_ids[i])} pred", "truth", "pred alpha")]
        save_image_grid(
            torch.stack(rows),
            self.w.path / "samples" / f"step_{step:06d}.png",
            col_titles=cols,
            row_titles=titles,
            title=f"Ψ3d step {step}: held-out identities at the yaw bins",
        )

    def finish(self, rows: list[dict[str, float]]) -> None:
        cfg, tc, w, base, yaw_bins = self.cfg, self.tc, self.w, self.base, self.yaw_bins
        train_ids, val_ids = self.train_ids, self.val_ids
        final_bins = self.last_step_bins or validate_views(
            self.ema.module, self.views, self.device, self.objective.lpips
        )
        final = summarise(final_bins, self.base, self.yaw_bins)
        history = [
            {"step": r["step"], **{k: [r[f"val_{k}_yaw{b:+g}"] for b in yaw_bins] for k in final_bins}}
            for r in rows
            if f"val_psnr_yaw{yaw_bins[0]:+g}" in r
        ]
        plot_learning_curves(
            history,
            base,
            yaw_bins,
            w.path / "learning_curves.png",
            f"Ψ3d ({cfg.preset}): {len(val_ids)} held-out identities, {tc.steps} steps",
        )
        curve_rows = [{k: v for k, v in r.items() if "_yaw" not in k} for r in rows]
        metrics = {
            "val_psnr_novel": final["psnr_novel"],
            "val_margin_vs_input_novel": final["margin_vs_input_novel"],
            "val_margin_vs_input_min": final["margin_vs_input_min"],
            "val_soft_iou_min": final["soft_iou_min"],
            "val_depth_error_novel": final["depth_error_novel"],
            "val_psnr_reconstruction_yaw0": final["psnr_reconstruction_yaw0"],
            # the background alone vs the target (low = shortcut closed)
            "val_background_psnr_novel": final["background_psnr_novel"],
            "val_alpha_inside_mean": final["alpha_inside_mean"],
            "val_alpha_outside_mean": final["alpha_outside_mean"],
            "baseline_psnr_input_novel": final["psnr_input_novel"],
            "baseline_psnr_mean_image_novel": final["psnr_mean_image_novel"],
            # expression: PSNR inside the mouth box, and does the render change with the input's expression?
            "val_mouth_psnr_novel": final["mouth_psnr_novel"],
            "val_eyes_psnr_novel": final["eyes_psnr_novel"],
            "baseline_mouth_psnr_input_novel": final["mouth_psnr_input_novel"],
            "baseline_mouth_psnr_mean_image_novel": final["mouth_psnr_mean_image_novel"],
            **{k: final[k] for k in ("expression_change_novel", "expression_change_yaw0") if k in final},
            **{f"val_{k}": v for k, v in final.items() if "_yaw" in k},
        }
        publish_trained(
            w,
            cfg.model,
            self.ema.module,
            curve_rows,
            f"Ψ3d ({cfg.preset})",
            metrics,
            {"steps": tc.steps, "train_identities": int(len(train_ids)), "val_identities": int(len(val_ids))},
            {"kind": KIND, "steps": tc.steps},
        )
        (w.path / "validation.json").write_text(
            json.dumps(
                {"yaw_bins_degrees": yaw_bins, "final": final_bins, "baselines": base, "history": history}, indent=1
            )
        )
        per_bin = ", ".join(
            f"{b:+g}° {m:.2f}/{c:.2f}" for b, m, c in zip(yaw_bins, final_bins["psnr"], base["psnr_input"])
        )
        print(
            f"psi3d: held-out novel-view PSNR {final['psnr_novel']:.2f} dB "
            f"vs copy-input {final['psnr_input_novel']:.2f} dB "
            f"(margin min {final['margin_vs_input_min']:+.2f}) and mean image {final['psnr_mean_image_novel']:.2f} dB; "
            f"soft IoU min {final['soft_iou_min']:.3f}; by bin (Ψ3d/copy): {per_bin}"
        )


def _train(
    cfg: PipelineConfig, samples: Artifact, w: ArtifactWriter, stop_after: int | None, ddp: DistContext = SINGLE
) -> None:
    """Train in this process; ``ddp``: this worker's rank in a torchrun run (pipeline_tasks/training/distributed.py)."""
    Psi3dTrainer(cfg, samples, w, stop_after, ddp).run()


def load_psi3d(artifact: Artifact, model_cfg: ModelConfig | None = None, device="cpu") -> Psi:
    """The published (EMA) Ψ3d of an artifact, in eval mode; refuses another preset."""
    ckpt = load_checkpoint(artifact.path / CHECKPOINT, expected=model_cfg, map_location=device)
    psi = build_psi(ckpt.config, static=True).to(device)
    ckpt.load_into({"psi": psi})
    return psi.eval()


SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=("psi3d", "model", "device"),
    parents=("genhead_samples",),
    build=train_psi3d,
    config=stage_config,
    load=load_psi3d,
    train=_train,
)
train_psi3d_task = SPEC.task()
