"""The training objective of Ψ3d (stage 2a) and Ψ (stage 4), with the real/pseudo rule of DESIGN.md §1.

Per sample, the target is either *real* (a GenHead view for Ψ3d; the real video frame for Ψ) or
*pseudo* (a Ψ3d-rendered view of a video frame):

* real target → L1 (final image, raw render, alpha) + LPIPS + identity + adversarial;
* pseudo target → LPIPS only.

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
from models.losses import (
    LPIPSLoss,
    build_identity_loss,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
)

ALPHA_WEIGHT = 0.3  # the published "seg" L1 weight on the rendered alpha


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


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
            self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)

    def generator_loss(
        self,
        out: dict[str, torch.Tensor],
        target: torch.Tensor,
        target_alpha: torch.Tensor | None,
        cameras: torch.Tensor,
        real: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``out``: Ψ.render output (``image`` [B,3,H,W], ``image_raw``, ``alpha``); targets in [−1,1]."""
        cfg = self.losses
        real = real.to(torch.bool)
        pseudo = ~real
        n = real.numel()
        total = out["image"].new_zeros(())
        log: dict[str, float] = {"real_fraction": float(real.float().mean())}

        def add(name: str, value: torch.Tensor, weight: float) -> None:
            nonlocal total
            log[name] = float(value.detach())
            if weight:
                total = total + weight * value

        # LPIPS on every sample (real and pseudo), averaged over the batch
        lp = out["image"].new_zeros(())
        for mask in (real, pseudo):
            if mask.any():
                lp = lp + self.lpips(out["image"][mask], target[mask]) * (mask.sum() / n)
        add("lpips", lp, cfg.lpips.at(step))
        if real.any():
            img, tgt = out["image"][real], target[real]
            raw = out["image_raw"][real]
            l1 = F.l1_loss(img, tgt) + F.l1_loss(raw, downsample(tgt, raw.shape[-1]))
            if target_alpha is not None:
                a = out["alpha"][real]
                l1 = l1 + ALPHA_WEIGHT * F.l1_loss(a, downsample(target_alpha[real], a.shape[-1]))
            add("l1", l1 * (real.sum() / n), cfg.l1.at(step))
            if self.identity is not None and cfg.identity.at(step):
                add("identity", self.identity(img, tgt) * (real.sum() / n), cfg.identity.at(step))
            if self.discriminator is not None and cfg.adversarial.at(step):
                self.discriminator.requires_grad_(False)
                logits = self.discriminator(img, raw, cameras[real])
                add("adversarial", generator_adversarial_loss(logits) * (real.sum() / n), cfg.adversarial.at(step))
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
