"""2D super-resolution from the neural-render resolution to the output resolution.

A residual upsampler in the spirit of EG3D's ``SuperresolutionHybrid*`` (skip architecture): the
raw RGB is upsampled bilinearly and every ×2 stage adds an RGB residual computed from the
feature image, so at initialisation the output is close to the upsampled raw render.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SuperResolution(nn.Module):
    """Feature image ``[B, C_in, h, w]`` in [−1,1] (first 3 = RGB) → RGB ``[B, 3, h·s, w·s]``, s a power of 2."""

    def __init__(self, in_channels: int, channels: int, scale: int, min_channels: int = 32):
        super().__init__()
        n_up = int(round(math.log2(scale))) if scale >= 1 else -1
        if scale < 1 or 2**n_up != scale:
            raise ValueError(f"super-resolution scale must be a power of 2 (image/neural resolution); got {scale}")
        self.scale = scale
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.LeakyReLU(0.2))
        self.stages = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        c = channels
        for _ in range(n_up):
            c_out = max(c // 2, min_channels)
            self.stages.append(
                nn.Sequential(
                    nn.Conv2d(c, c_out, 3, padding=1),
                    nn.LeakyReLU(0.2),
                    nn.Conv2d(c_out, c_out, 3, padding=1),
                    nn.LeakyReLU(0.2),
                )
            )
            rgb = nn.Conv2d(c_out, 3, 1)
            nn.init.normal_(rgb.weight, std=1e-3)
            nn.init.zeros_(rgb.bias)
            self.to_rgb.append(rgb)
            c = c_out
        if n_up == 0:  # same resolution: a single residual head
            rgb = nn.Conv2d(c, 3, 1)
            nn.init.normal_(rgb.weight, std=1e-3)
            nn.init.zeros_(rgb.bias)
            self.to_rgb.append(rgb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x[:, :3]
        h = self.stem(x.contiguous(memory_format=torch.channels_last))
        if not self.stages:
            return rgb + self.to_rgb[0](h)
        for stage, to_rgb in zip(self.stages, self.to_rgb):
            h = stage(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False))
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(h)
        return rgb.contiguous()
