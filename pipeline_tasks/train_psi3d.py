"""Stage 2a: train Ψ3d (Ψ with motion off) on GenHead samples (DESIGN.md §1).

One sample: an identity and two of its views p ≠ q; Ψ3d(Ī(θ_p)) → tri-plane → render at θ_q,
compared with Ī(θ_q) and its alpha (L1 + LPIPS, + identity and adversarial from their start
steps). The last ``val_identities`` identities of the store are held out: validation renders
their view 0 at their other views, and the stage reports PSNR/LPIPS against two baselines — the
input image compared with the target view, and the mean training image — so "it learned" is a
number in the manifest. The published checkpoint holds the EMA weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.checkpoints import load_checkpoint
from models.config import ModelConfig
from models.psi import build_psi
from models.psi.network import Psi
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.distributed import SINGLE, DistContext, launch
from pipeline_tasks.metrics import psnr
from pipeline_tasks.psi_objective import PsiObjective
from pipeline_tasks.stage import run_once, stage_task
from pipeline_tasks.training.checkpoint import TrainingState
from pipeline_tasks.training.ema import EMA
from pipeline_tasks.training.grid import save_image_grid
from pipeline_tasks.training.sampler import SeededSampler
from pipeline_tasks.training_loop import publish_trained, run_loop
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "psi3d"
SCHEMA_VERSION = 1
CHECKPOINT = "checkpoint.pt"


def to_model_images(u8: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` → float ``[..., 3, H, W]`` in [−1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(u8)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)


def to_model_alpha(u8: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W]`` → float ``[..., 1, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(u8)).float().div_(255.0).unsqueeze(-3)


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
            self._cache = {k: self.group[k][:] for k in ("images", "alpha", "cameras")}

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
        """(source images, target images, target alpha, target cameras) for identities ``ids``."""
        imgs, alpha, cams = self.get("images", ids), self.get("alpha", ids), self.get("cameras", ids)
        r = np.arange(len(ids))
        return (
            to_model_images(imgs[r, p]).to(device),
            to_model_images(imgs[r, q]).to(device),
            to_model_alpha(alpha[r, q]).to(device),
            torch.from_numpy(cams[r, q]).float().to(device),
        )


def split_identities(n: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = min(max(n_val, 1), n - 1)
    return np.arange(n - n_val), np.arange(n - n_val, n)


def stage_config(cfg: PipelineConfig) -> dict:
    return cfg.stage_config("psi3d", "model", "device")


def train_psi3d(
    cfg: PipelineConfig, samples: Artifact | str, registry: ArtifactRegistry | None = None, stop_after: int | None = None
) -> Artifact:
    """Train (or reuse) the ``psi3d`` artifact for ``samples`` (a ``genhead_samples`` artifact or ref)."""
    registry = registry or ArtifactRegistry()
    samples = registry.resolve(samples, schema_version=gs.SCHEMA_VERSION)
    gs.validate(samples.path / "store.zarr")
    return run_once(
        registry, KIND, stage_config(cfg), [samples], SCHEMA_VERSION,
        lambda w: launch(KIND, cfg, [samples], w, stop_after, cfg.psi3d.nproc_per_node)
        if cfg.psi3d.nproc_per_node > 1 else _train(cfg, samples, w, stop_after),
    )


@torch.no_grad()
def validate_views(psi: Psi, data: GenHeadViews, val_ids: np.ndarray, device, lpips_fn, batch: int = 16) -> dict[str, float]:
    """Novel-view metrics of ``psi`` on held-out identities (view 0 → every other view), with baselines."""
    psi.eval()
    res = {"psnr": [], "lpips": [], "psnr_input": [], "psnr_mean": []}
    mean_img = None
    for q in range(1, data.views):
        for i in range(0, len(val_ids), batch):
            ids = val_ids[i : i + batch]
            src, tgt, _, cams = data.pairs(ids, np.zeros(len(ids), int), np.full(len(ids), q), device)
            out = psi.render(psi(src), cams, perturb=False)
            res["psnr"].append(psnr(out["image"], tgt))
            res["lpips"].append(lpips_fn(out["image"], tgt).reshape(1).expand(len(ids)))
            res["psnr_input"].append(psnr(src, tgt))
            if mean_img is None:
                mean_img = data.mean_train_image.to(device)
            res["psnr_mean"].append(psnr(mean_img.expand_as(tgt), tgt))
    psi.train()
    return {k: float(torch.cat(v).mean()) for k, v in res.items()}


def _train(cfg: PipelineConfig, samples: Artifact, w: ArtifactWriter, stop_after: int | None, ddp: DistContext = SINGLE) -> None:
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
    data.mean_train_image = to_model_images(data.get("images", train_ids[:256]).reshape(-1, data.resolution, data.resolution, 3)).mean(0, keepdim=True)

    torch.manual_seed(tc.seed)
    psi = build_psi(cfg.model, static=True).to(device)
    net = ddp.wrap(psi)  # the forward goes through DDP (gradients averaged over ranks)
    objective = PsiObjective(cfg.model, tc.losses, lr=tc.lr).to(device)
    params = [p for p in psi.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.adam_eps)
    ema = EMA(psi, tc.ema_halflife_steps, tc.ema_rampup)
    sampler = SeededSampler(train_ids, tc.batch_size, tc.seed)
    gen = torch.Generator().manual_seed(tc.seed + 1)
    state = TrainingState(models={"psi": psi}, optimizers={"psi": opt}, emas={"psi": ema}, sampler=sampler, generators={"render": gen})
    if objective.discriminator is not None:
        state.models["D"] = objective.discriminator
        state.optimizers["D"] = objective.d_optimizer

    def step_fn(step: int) -> dict[str, float]:
        ids = sampler.next_batch()
        p = sampler.rng.integers(0, data.views, len(ids))
        q = (p + sampler.rng.integers(1, data.views, len(ids))) % data.views  # q ≠ p
        ids, p, q = ddp.shard(ids, p, q)  # this rank's part of the global batch
        src, tgt, alpha, cams = data.pairs(ids, p, q, device)
        out = psi.render(net(src), cams, generator=gen)
        loss, log = objective.generator_loss(out, tgt, alpha, cams, torch.ones(len(ids), dtype=torch.bool), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(psi, step + 1)
        log.update(objective.discriminator_step(out, tgt, cams, cams, step))
        ddp.average_parameters(objective.discriminator)
        log.pop("real_fraction", None)
        return {"loss": log.pop("total"), **log}

    def val_fn(step: int) -> dict[str, float]:
        m = validate_views(ema.module, data, val_ids, device, objective.lpips)
        return {"psnr": m["psnr"], "lpips": m["lpips"]}

    samples_dir = w.path / "samples"

    @torch.no_grad()
    def sample_fn(step: int) -> None:
        model = ema.module.eval()
        ids = val_ids[:4]
        v = data.views
        imgs = to_model_images(data.get("images", ids)).to(device)  # [n, V, 3, H, W]
        cams = torch.from_numpy(data.get("cameras", ids)).float().to(device)
        out = model.render(model(imgs[:, 0]), cams[:, 1:], perturb=False)["image"]  # [n, V-1, 3, H, W]
        rows = torch.cat([imgs[:, :1], out.clamp(-1, 1), imgs[:, 1:]], dim=1).cpu()
        cols = ["input"] + [f"pred view {k}" for k in range(1, v)] + [f"truth view {k}" for k in range(1, v)]
        save_image_grid(rows, samples_dir / f"step_{step:06d}.png", col_titles=cols,
                        row_titles=[f"id {int(i)}" for i in ids], title=f"Ψ3d step {step} (held-out identities)")

    steps_done, rows = run_loop(
        tc, state, w.path / "checkpoints", w.path / "logs", step_fn, val_fn, sample_fn, desc="psi3d", stop_after=stop_after,
        is_main=ddp.is_main,
    )
    ddp.check_in_sync(psi)
    if steps_done < tc.steps:  # stopped early on purpose (tests): leave the folder to resume
        raise InterruptedError(f"psi3d stopped after {steps_done}/{tc.steps} steps")
    if not ddp.is_main:
        return
    final = validate_views(ema.module, data, val_ids, device, objective.lpips)
    metrics = {
        "val_psnr": final["psnr"],
        "val_lpips": final["lpips"],
        "baseline_psnr_input_vs_target": final["psnr_input"],
        "baseline_psnr_mean_image": final["psnr_mean"],
        "margin_psnr_vs_input": final["psnr"] - final["psnr_input"],
        "margin_psnr_vs_mean": final["psnr"] - final["psnr_mean"],
    }
    publish_trained(w, cfg.model, ema.module, rows, f"Ψ3d ({cfg.preset})", metrics,
                    {"steps": tc.steps, "train_identities": int(len(train_ids)), "val_identities": int(len(val_ids))},
                    {"kind": KIND, "steps": tc.steps})
    print(
        f"psi3d: held-out novel-view PSNR {final['psnr']:.2f} dB vs input-as-prediction {final['psnr_input']:.2f} dB "
        f"(+{metrics['margin_psnr_vs_input']:.2f}) and mean training image {final['psnr_mean']:.2f} dB "
        f"(+{metrics['margin_psnr_vs_mean']:.2f}); LPIPS {final['lpips']:.3f}"
    )


def load_psi3d(artifact: Artifact, model_cfg: ModelConfig | None = None, device="cpu") -> Psi:
    """The published (EMA) Ψ3d of an artifact, in eval mode; refuses another preset."""
    ckpt = load_checkpoint(artifact.path / CHECKPOINT, expected=model_cfg, map_location=device)
    psi = build_psi(ckpt.config, static=True).to(device)
    ckpt.load_into({"psi": psi})
    return psi.eval()


train_psi3d_task = stage_task(train_psi3d, "train-psi3d")
