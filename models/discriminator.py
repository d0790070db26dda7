"""Camera-conditioned dual discriminator (EG3D / Portrait4D ``DualDiscriminator``) and its lazy R1.

Input: the final image concatenated with the raw neural render upsampled to the same size
(6 channels). A StyleGAN2-like residual D (resnet architecture, minibatch-stddev epilogue)
whose output is projected onto an embedding of the 25-vector camera (projection conditioning).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.config import DiscriminatorConfig


class _ResBlock(nn.Module):
    """conv → lrelu → conv → lrelu → avg-pool, plus a pooled 1×1 skip; sum scaled by 1/√2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv0(x), 0.2)
        y = F.avg_pool2d(F.leaky_relu(self.conv1(y), 0.2), 2)
        return (y + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append the std over groups of samples (StyleGAN2) as one channel; the group shrinks to divide the batch."""
    b, c, h, w = x.shape
    g = max(1, math.gcd(group, b))
    y = x.reshape(g, -1, c, h, w)
    y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [B/g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], 1)


class DualDiscriminator(nn.Module):
    """``D(image [B,3,H,W], image_raw [B,3,h,w], cameras [B,25]) → logits [B,1]``."""

    def __init__(self, cfg: DiscriminatorConfig, image_resolution: int, c_dim: int = 25, in_channels: int = 6):
        super().__init__()
        if image_resolution < 8 or 2 ** int(math.log2(image_resolution)) != image_resolution:
            raise ValueError(f"discriminator image_resolution must be a power of 2 ≥ 8; got {image_resolution}")
        self.cfg = cfg
        self.resolution = image_resolution
        ch = lambda i: min(cfg.channels * 2**i, cfg.max_channels)  # noqa: E731
        self.from_rgb = nn.Conv2d(in_channels, ch(0), 1)
        n_blocks = int(math.log2(image_resolution)) - 2  # down to 4×4
        self.blocks = nn.ModuleList(_ResBlock(ch(i), ch(i + 1)) for i in range(n_blocks))
        c_top = ch(n_blocks)
        self.epilogue_conv = nn.Conv2d(c_top + 1, c_top, 3, padding=1)
        self.epilogue_fc = nn.Linear(c_top * 16, c_top)
        self.out = nn.Linear(c_top, cfg.cmap_dim)
        self.mapping = nn.Sequential(
            nn.Linear(c_dim, cfg.cmap_dim), nn.LeakyReLU(0.2), nn.Linear(cfg.cmap_dim, cfg.cmap_dim), nn.LeakyReLU(0.2)
        )

    def forward(self, image: torch.Tensor, image_raw: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] != self.resolution:
            raise ValueError(f"discriminator built for {self.resolution}², got images of {tuple(image.shape[-2:])}")
        raw_up = F.interpolate(image_raw, size=image.shape[-2:], mode="bilinear", align_corners=False, antialias=False)
        x = F.leaky_relu(self.from_rgb(torch.cat([image, raw_up], 1)), 0.2)
        for blk in self.blocks:
            x = blk(x)
        x = F.leaky_relu(self.epilogue_conv(minibatch_stddev(x, self.cfg.mbstd_group)), 0.2)
        x = self.out(F.leaky_relu(self.epilogue_fc(x.flatten(1)), 0.2))
        cmap = self.mapping(cameras)
        return (x * cmap).sum(1, keepdim=True) / math.sqrt(self.cfg.cmap_dim)


def r1_penalty(
    d: DualDiscriminator, image: torch.Tensor, image_raw: torch.Tensor, cameras: torch.Tensor
) -> torch.Tensor:
    """Per-sample ‖∇_x D(x)‖² over both real inputs, ``[B]`` (differentiable for D's update)."""
    image = image.detach().requires_grad_(True)
    image_raw = image_raw.detach().requires_grad_(True)
    logits = d(image, image_raw, cameras)
    g_img, g_raw = torch.autograd.grad(logits.sum(), [image, image_raw], create_graph=True)
    return g_img.square().sum((1, 2, 3)) + g_raw.square().sum((1, 2, 3))


def lazy_r1_loss(d: DualDiscriminator, image, image_raw, cameras, step: int) -> torch.Tensor:
    """R1 applied lazily: every ``r1_every`` steps, γ/2 · penalty · r1_every (StyleGAN2); else 0."""
    cfg = d.cfg
    if cfg.r1_gamma == 0 or step % cfg.r1_every:
        return image.new_zeros(())
    return r1_penalty(d, image, image_raw, cameras).mean() * (cfg.r1_gamma / 2) * cfg.r1_every
