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
from models.psi import build_psi
from models.psi.network import Psi
from pipeline_tasks import stages
from pipeline_tasks.benchmark_set import NovelViewSet, render_novel_view_set
from pipeline_tasks.config import PipelineConfig, cosine_lr
from pipeline_tasks.data.images import to_model_alpha, to_model_images
from pipeline_tasks.distributed import SINGLE, DistContext, launch
from pipeline_tasks.metrics import alpha_iou, masked_depth_error, psnr
from pipeline_tasks.psi_objective import PsiObjective
from pipeline_tasks.stage import StageSpec, run_once
from pipeline_tasks.training.checkpoint import TrainingState
from pipeline_tasks.training.ema import EMA
from pipeline_tasks.training.grid import save_image_grid
from pipeline_tasks.training.optim import adam
from pipeline_tasks.training.sampler import SeededSampler
from pipeline_tasks.training_loop import CHECKPOINT, publish_trained, run_loop
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "psi3d"
SCHEMA_VERSION = 2  # v2: head-relative cameras, loss_recon_v2 structure, per-bin validation


class GenHeadViews:
    """Identities of a ``genhead_samples`` store; held in memory when small enough, else read per batch."""

    def __init__(self, store_path: Path, in_memory_limit_mb: float = 4096):
        self.group = gs.open_read(store_path)
        self.n, self.views = self.group["images"].shape[:2]
        self.resolution = self.group["images"].shape[2]
        size_mb = self.group["images"].nbytes / 2**20
        self._cache = None
        self.mean_train_image: torch.Tensor | None = None  # set by the trainer (a validation baseline)
        if size_mb <= in_memory_limit_mb:
            self._cache = {k: self.group[k][:] for k in ("images", "alpha", "depth", "cameras")}

    def get(self, name: str, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if self._cache is not None:
            return self._cache[name][ids]
        order = np.argsort(ids)
        data = self.group[name].get_orthogonal_selection((ids[order],))
        out = np.empty_like(data)
        out[order] = data
        return out

    def pairs(self, ids: np.ndarray, p: np.ndarray, q: np.ndarray, device: torch.device):
        """(source images, target images, target alpha, target depth, target cameras) for identities ``ids``.

        ``q`` is ``[B]`` (one target view each) or ``[B, K]`` (K target views each: targets ``[B, K, …]``)."""
        imgs, alpha, cams = self.get("images", ids), self.get("alpha", ids), self.get("cameras", ids)
        depth = self.get("depth", ids)
        r = np.arange(len(ids)) if np.ndim(q) == 1 else np.arange(len(ids))[:, None]
        return (
            to_model_images(imgs[np.arange(len(ids)), p]).to(device),
            to_model_images(imgs[r, q]).to(device),
            to_model_alpha(alpha[r, q]).to(device),
            torch.from_numpy(depth[r, q].astype(np.float32)).unsqueeze(-3).to(device),
            torch.from_numpy(cams[r, q]).float().to(device),
        )

    def most_frontal_view(self, ids: np.ndarray) -> np.ndarray:
        """Per identity, the stored view whose head-relative camera looks most nearly along the face's axis (+z)."""
        cams = self.get("cameras", ids)[..., :16].reshape(len(ids), self.views, 4, 4)
        pos = cams[..., :3, 3]
        return np.argmax(pos[..., 2] / np.linalg.norm(pos, axis=-1).clip(1e-9), axis=1)

    def novel_view_set(self, ids: np.ndarray, yaw_bins: list[float]) -> NovelViewSet:
        """Identities ``ids`` of the store re-rendered (pose 0) at the frontal camera and the yaw bins."""
        ids = np.asarray(ids)
        labels = {k: self.group[k].get_orthogonal_selection((ids,)) for k in ("shape", "expression", "gaze", "z")}
        return render_novel_view_set(
            labels["shape"], labels["expression"], labels["gaze"], labels["z"], yaw_bins, self.resolution
        )


def draw_views(
    rng: np.random.Generator, n: int, views: int, k: int, preferred: np.ndarray | None = None, preferred_p: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Source view ``p`` [n] and target views ``q`` ≠ p: [n] when ``k`` = 1, else [n, k] distinct per row.

    ``preferred`` [n]: a view per row taken as the source with probability ``preferred_p`` (else uniform)."""
    if not 1 <= k <= views - 1:
        raise ValueError(f"psi3d.targets_per_source={k}: must be between 1 and views_per_identity − 1 = {views - 1}")
    p = rng.integers(0, views, n)
    if preferred is not None and preferred_p > 0:
        p = np.where(rng.random(n) < preferred_p, np.asarray(preferred), p)
    if k == 1:
        return p, (p + rng.integers(1, views, n)) % views
    offsets = np.stack([rng.permutation(views - 1)[:k] + 1 for _ in range(n)])
    return p, (p[:, None] + offsets) % views


def split_identities(n: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = min(max(n_val, 1), n - 1)
    return np.arange(n - n_val), np.arange(n - n_val, n)


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
    samples = stages.resolve(registry, samples, "genhead_samples")
    gs.validate(samples.path / "store.zarr")
    return run_once(
        registry,
        KIND,
        stage_config(cfg),
        [samples],
        SCHEMA_VERSION,
        lambda w: (
            launch(KIND, cfg, [samples], w, stop_after, cfg.psi3d.nproc_per_node)
            if cfg.psi3d.nproc_per_node > 1
            else _train(cfg, samples, w, stop_after)
        ),
    )


def novel_mean(values: list[float], bins: list[float]) -> float:
    """Mean over the bins other than 0° (there the input *is* the target: reconstruction, not a novel view)."""
    off = [v for v, b in zip(values, bins) if b != 0]
    return float(np.mean(off)) if off else float("nan")


@torch.no_grad()
def baselines(views: NovelViewSet, mean_image: torch.Tensor) -> dict[str, list[float]]:
    """Per-bin PSNR of copying the input to every bin and of the mean training image."""
    v = len(views.yaw_bins)
    return {
        "psnr_input": [float(psnr(views.source, views.targets[:, j]).mean()) for j in range(v)],
        "psnr_mean_image": [
            float(psnr(mean_image.expand_as(views.source), views.targets[:, j]).mean()) for j in range(v)
        ],
    }


@torch.no_grad()
def validate_views(psi: Psi, views: NovelViewSet, device, lpips_fn, batch: int = 8) -> dict[str, list[float]]:
    """Per-bin metrics of ``psi`` on a :class:`NovelViewSet`: PSNR, LPIPS, soft IoU and masked depth error."""
    was_training = psi.training
    psi.eval()
    v, res = len(views.yaw_bins), views.source.shape[-1]
    cams = views.cameras.to(device)
    per: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("psnr", "lpips", "soft_iou", "depth_error", "background_psnr", "alpha_inside", "alpha_outside")
    }
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
    return {k: [float(x) for x in torch.cat(val).mean(0)] for k, val in per.items()}


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
            "background_psnr_novel": novel_mean(metrics["background_psnr"], bins),
            "alpha_inside_mean": float(np.mean(metrics["alpha_inside"])),
            "alpha_outside_mean": float(np.mean(metrics["alpha_outside"])),
        }
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


def _train(
    cfg: PipelineConfig, samples: Artifact, w: ArtifactWriter, stop_after: int | None, ddp: DistContext = SINGLE
) -> None:
    """Train in this process; ``ddp``: this worker's rank in a torchrun run (pipeline_tasks/distributed.py)."""
    tc = cfg.psi3d
    device = ddp.device(cfg.device)
    ddp.check_batch(tc.batch_size)
    data = GenHeadViews(samples.path / "store.zarr")
    if data.resolution != cfg.model.psi.image_resolution:
        raise ValueError(
            f"{samples.ref}: images are {data.resolution}² but preset {cfg.preset!r} trains Ψ3d at "
            f"{cfg.model.psi.image_resolution}²; regenerate genhead_samples with this preset"
        )
    if data.views < 2:
        raise ValueError(f"{samples.ref}: Ψ3d needs ≥ 2 views per identity, the store has {data.views}")
    train_ids, val_ids = split_identities(data.n, tc.val_identities)
    data.mean_train_image = to_model_images(
        data.get("images", train_ids[:256]).reshape(-1, data.resolution, data.resolution, 3)
    ).mean(0, keepdim=True)

    torch.manual_seed(tc.seed)
    psi = build_psi(cfg.model, static=True).to(device)
    net = ddp.wrap(psi)  # the forward goes through DDP (gradients averaged over ranks)
    objective = PsiObjective(cfg.model, tc.losses, lr=tc.lr).to(device)
    params = [p for p in psi.parameters() if p.requires_grad]
    opt = adam(params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.adam_eps)
    ema = EMA(psi, tc.ema_halflife_steps, tc.ema_rampup)
    sampler = SeededSampler(train_ids, tc.batch_size, tc.seed)
    gen = torch.Generator().manual_seed(tc.seed + 1)
    state = TrainingState(
        models={"psi": psi}, optimizers={"psi": opt}, emas={"psi": ema}, sampler=sampler, generators={"render": gen}
    )
    if objective.discriminator is not None:
        state.models["D"] = objective.discriminator
        state.optimizers["D"] = objective.d_optimizer

    use_depth = tc.losses.depth.weight > 0
    k_targets = tc.targets_per_source
    draw_views(np.random.default_rng(0), 1, data.views, k_targets)  # fails early on an impossible K
    yaw_bins = [float(y) for y in cfg.eval.yaw_bins_degrees]
    views = data.novel_view_set(val_ids, yaw_bins) if ddp.is_main else None
    base = baselines(views, data.mean_train_image) if views is not None else None

    def step_fn(step: int) -> dict[str, float]:
        ids = sampler.next_batch()
        frontal = data.most_frontal_view(ids) if tc.frontal_source_p > 0 else None
        p, q = draw_views(sampler.rng, len(ids), data.views, k_targets, frontal, tc.frontal_source_p)  # q ≠ p
        ids, p, q = ddp.shard(ids, p, q)  # this rank's part of the global batch
        src, tgt, alpha, depth, cams = data.pairs(ids, p, q, device)
        out = psi.render(net(src), cams, generator=gen)
        if k_targets > 1:  # [B, K, …] → [B·K, …]: every (source, target view) pair is one sample of the objective
            out, tgt, alpha, depth, cams = (
                {k: v.flatten(0, 1) for k, v in out.items()},
                *(x.flatten(0, 1) for x in (tgt, alpha, depth, cams)),
            )
        loss, log = objective.generator_loss(
            out,
            tgt,
            alpha,
            cams,
            torch.ones(len(tgt), dtype=torch.bool),
            step,
            target_depth=depth if use_depth else None,
        )
        lr = cosine_lr(tc.lr, step, tc.steps, tc.lr_final_fraction)  # a function of the step: resumes exactly
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(psi, step + 1)
        log.update(objective.discriminator_step(out, tgt, cams, cams, step))
        ddp.average_parameters(objective.discriminator)
        log.pop("real_fraction", None)
        return {"loss": log.pop("total"), **log, "lr": lr}

    def val_fn(step: int) -> dict[str, float]:
        m = validate_views(ema.module, views, device, objective.lpips)
        return summarise(m, base, yaw_bins)

    samples_dir = w.path / "samples"

    @torch.no_grad()
    def sample_fn(step: int) -> None:
        model = ema.module.eval()
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
        titles = [t for i in range(k) for t in (f"id {int(val_ids[i])} pred", "truth", "pred alpha")]
        save_image_grid(
            torch.stack(rows),
            samples_dir / f"step_{step:06d}.png",
            col_titles=cols,
            row_titles=titles,
            title=f"Ψ3d step {step}: held-out identities at the yaw bins",
        )

    steps_done, rows = run_loop(
        tc,
        state,
        w.path / "checkpoints",
        w.path / "logs",
        step_fn,
        val_fn,
        sample_fn,
        desc="psi3d",
        stop_after=stop_after,
        is_main=ddp.is_main,
    )
    ddp.check_in_sync(psi)
    if steps_done < tc.steps:  # stopped early on purpose (tests): leave the folder to resume
        raise InterruptedError(f"psi3d stopped after {steps_done}/{tc.steps} steps")
    if not ddp.is_main:
        return
    final_bins = validate_views(ema.module, views, device, objective.lpips)
    final = summarise(final_bins, base, yaw_bins)
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
        "val_background_psnr_novel": final[
            "background_psnr_novel"
        ],  # the background alone vs the target (low = shortcut closed)
        "val_alpha_inside_mean": final["alpha_inside_mean"],
        "val_alpha_outside_mean": final["alpha_outside_mean"],
        "baseline_psnr_input_novel": final["psnr_input_novel"],
        "baseline_psnr_mean_image_novel": final["psnr_mean_image_novel"],
        **{f"val_{k}": v for k, v in final.items() if "_yaw" in k},
    }
    publish_trained(
        w,
        cfg.model,
        ema.module,
        curve_rows,
        f"Ψ3d ({cfg.preset})",
        metrics,
        {"steps": tc.steps, "train_identities": int(len(train_ids)), "val_identities": int(len(val_ids))},
        {"kind": KIND, "steps": tc.steps},
    )
    (w.path / "validation.json").write_text(
        json.dumps({"yaw_bins_degrees": yaw_bins, "final": final_bins, "baselines": base, "history": history}, indent=1)
    )
    per_bin = ", ".join(f"{b:+g}° {m:.2f}/{c:.2f}" for b, m, c in zip(yaw_bins, final_bins["psnr"], base["psnr_input"]))
    print(
        f"psi3d: held-out novel-view PSNR {final['psnr_novel']:.2f} dB "
        f"vs copy-input {final['psnr_input_novel']:.2f} dB "
        f"(margin min {final['margin_vs_input_min']:+.2f}) and mean image {final['psnr_mean_image_novel']:.2f} dB; "
        f"soft IoU min {final['soft_iou_min']:.3f}; by bin (Ψ3d/copy): {per_bin}"
    )


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
