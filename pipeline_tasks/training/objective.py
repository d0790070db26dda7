"""The training objective of Ψ3d (stage 2a) and Ψ (stage 4), with the real/pseudo rule of DESIGN.md §1.

Per sample, the target is either *real* (a GenHead view for Ψ3d; the real video frame for Ψ) or
*pseudo* (a Ψ3d-rendered view of a video frame):

* real target → L1 + LPIPS on the final image, the raw render and the raw foreground-only render
  (vs target × alpha), L1 of the background (vs target × (1 − alpha)), L1 of the alpha, masked
  depth L1 (synthetic world), + identity + adversarial;
* pseudo target → LPIPS on foreground-masked images.

Weights and start steps come from ``LossConfig``. The adversarial term uses the camera-conditioned
dual discriminator with lazy R1; its optimiser lives here so trainers can checkpoint it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.config import LossConfig, ModelConfig
from models.discriminator import DualDiscriminator, lazy_r1_loss
from models.genhead.regions import region_masks
from models.losses import (
    LPIPSLoss,
    build_identity_loss,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
)
from pipeline_tasks.eval.metrics import psnr
from pipeline_tasks.training.optim import adam


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def over_black(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``image`` in [−1, 1] multiplied by ``mask`` in [0, 1] (0 → black, −1): target × mask."""
    return (image + 1.0) * mask - 1.0


def masked_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (x * weight).sum() / weight.sum().clamp_min(1.0)


def expression_regions(cameras: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B,1,H,W]`` union of the mouth and eye masks of ``cameras`` (head-relative) at ``like``'s resolution."""
    masks = region_masks(cameras.detach().float().cpu(), like.shape[-1])
    return torch.maximum(masks["mouth"], masks["eyes"]).to(like)


class PsiObjective(nn.Module):
    """Loss terms of one batch; ``real`` marks samples whose target is real ([B] bool)."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        losses: LossConfig,
        identity_embedder: nn.Module | None = None,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.0, 0.99),
    ):
        super().__init__()
        self.losses = losses
        self.lpips = LPIPSLoss(losses.lpips_net)
        self.identity = build_identity_loss(losses, identity_embedder) if losses.identity.weight > 0 else None
        self.discriminator: DualDiscriminator | None = None
        self.d_optimizer: torch.optim.Optimizer | None = None
        if losses.adversarial.weight > 0:
            self.discriminator = DualDiscriminator(model_cfg.discriminator, model_cfg.render.image_resolution)
            self.d_optimizer = adam(self.discriminator.parameters(), lr=lr, betas=betas)

    def generator_loss(
        self,
        out: dict[str, torch.Tensor],
        target: torch.Tensor,
        target_alpha: torch.Tensor | None,
        cameras: torch.Tensor,
        real: torch.Tensor,
        step: int,
        target_depth: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``out``: Ψ.render output (``image`` [B,3,H,W], ``image_raw``, ``foreground_raw``,
        ``background_raw``, ``alpha``, ``depth``); targets in [−1,1], ``target_alpha`` [B,1,H,W] in
        [0,1], ``target_depth`` [B,1,H,W] (ray distance; synthetic world only).

        Every term is a mean over its samples, weighted by the fraction of the batch they are, so
        a batch's loss does not depend on how it splits into real and pseudo targets. Terms whose
        weight is 0 at ``step`` are not computed (LPIPS is the costly one)."""
        cfg = self.losses
        real = real.to(torch.bool)
        pseudo = ~real
        n = real.numel()
        total = out["image"].new_zeros(())
        log: dict[str, float] = {"real_fraction": float(real.float().mean())}

        def add(name: str, weight: float, fn) -> None:
            nonlocal total
            if weight:
                value = fn()
                log[name] = float(value.detach())
                total = total + weight * value

        if real.any():
            frac = real.sum() / n
            img, tgt = out["image"][real], target[real]
            raw = out["image_raw"][real]
            size = raw.shape[-1]
            tgt_raw = downsample(tgt, size)
            add("l1", cfg.l1.at(step), lambda: F.l1_loss(img, tgt) * frac)
            add("lpips", cfg.lpips.at(step), lambda: self.lpips(img, tgt) * frac)
            add("raw_l1", cfg.raw_l1.at(step), lambda: F.l1_loss(raw, tgt_raw) * frac)
            add("raw_lpips", cfg.raw_lpips.at(step), lambda: self.lpips(raw, tgt_raw) * frac)
            add(
                "region_l1",
                cfg.region_l1.at(step),
                lambda: masked_mean((img - tgt).abs(), expression_regions(cameras[real], img).expand_as(img)) * frac,
            )
            if target_alpha is not None:
                m = downsample(target_alpha[real], size)
                fg, bg, a = out["foreground_raw"][real], out["background_raw"][real], out["alpha"][real]
                tgt_fg = over_black(tgt_raw, m)
                add("foreground_l1", cfg.foreground_l1.at(step), lambda: F.l1_loss(fg, tgt_fg) * frac)
                add("foreground_lpips", cfg.foreground_lpips.at(step), lambda: self.lpips(fg, tgt_fg) * frac)
                add("background_l1", cfg.background_l1.at(step), lambda: ((bg - tgt_raw).abs() * (1 - m)).mean() * frac)
                add("alpha", cfg.alpha.at(step), lambda: F.l1_loss(a, m) * frac)
                if target_depth is not None and "depth" in out:
                    d_gt = downsample(target_depth[real], size)
                    inside = (m > 0.5).to(d_gt.dtype)
                    add(
                        "depth",
                        cfg.depth.at(step),
                        lambda: masked_mean((out["depth"][real] - d_gt).abs(), inside) * frac,
                    )
                with torch.no_grad():  # diagnostics of the foreground/background split (is the shortcut closed?)
                    log["diag_background_psnr"] = float(psnr(bg.float(), tgt_raw.float()).mean())
                    inside = (m > 0.5).float()
                    log["diag_alpha_inside"] = float(masked_mean(a.float(), inside))
                    log["diag_alpha_outside"] = float(masked_mean(a.float(), 1 - inside))
            if self.identity is not None and cfg.identity.at(step):
                add("identity", cfg.identity.at(step), lambda: self.identity(img, tgt) * frac)
            if self.discriminator is not None and cfg.adversarial.at(step):
                self.discriminator.requires_grad_(False)
                add(
                    "adversarial",
                    cfg.adversarial.at(step),
                    lambda: generator_adversarial_loss(self.discriminator(img, raw, cameras[real])) * frac,
                )
        if pseudo.any():
            frac = pseudo.sum() / n
            img, tgt = out["image"][pseudo], target[pseudo]
            if target_alpha is not None:
                m = target_alpha[pseudo]
                img, tgt = over_black(img, m), over_black(tgt, m)
            add("pseudo_lpips", cfg.pseudo_lpips.at(step), lambda: self.lpips(img, tgt) * frac)
        log["total"] = float(total.detach())
        return total, log

    def discriminator_step(
        self,
        fake: dict[str, torch.Tensor],
        real_image: torch.Tensor,
        real_cameras: torch.Tensor,
        fake_cameras: torch.Tensor,
        step: int,
    ) -> dict[str, float]:
        """One D update on real targets vs detached Ψ renders (only once the adversarial term is on)."""
        if self.discriminator is None or not self.losses.adversarial.at(step) or len(real_image) == 0:
            return {}
        d = self.discriminator.requires_grad_(True)
        raw_size = fake["image_raw"].shape[-1]
        real_raw = downsample(real_image, raw_size)
        loss = discriminator_adversarial_loss(
            d(real_image, real_raw, real_cameras), d(fake["image"].detach(), fake["image_raw"].detach(), fake_cameras)
        )
        r1 = lazy_r1_loss(d, real_image, real_raw, real_cameras, step)
        self.d_optimizer.zero_grad(set_to_none=True)
        (loss + r1).backward()
        self.d_optimizer.step()
        return {"d_loss": float(loss.detach()), "d_r1": float(r1.detach())}

    def extra_state(self) -> dict[str, Any]:
        if self.discriminator is None:
            return {}
        return {"discriminator": self.discriminator.state_dict(), "d_optimizer": self.d_optimizer.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.discriminator is not None and "discriminator" in state:
            self.discriminator.load_state_dict(state["discriminator"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
