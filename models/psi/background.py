"""Background U-Net (EncoderBG): source image → background feature image in [0, 1] at image/2.

Its output has the renderer's feature width and is composited behind the volume render with
the render's transmittance (``features + transmittance · background``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


class BackgroundUNet(nn.Module):
    """5-level U-Net (input at H, levels H/2 … H/16), skip connections, sigmoid output at H/2."""

    def __init__(
        self, out_channels: int, base: int = 32, levels: int = 4, in_channels: int = 5, max_channels: int = 256
    ):
        super().__init__()
        widths = [min(base * 2**i, max_channels) for i in range(levels)]
        self.stem = _conv(in_channels, widths[0], stride=2)  # H/2
        self.down = nn.ModuleList(_conv(widths[i], widths[i + 1], stride=2) for i in range(levels - 1))
        self.up = nn.ModuleList(_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels - 1)))
        self.out = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, x5: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x5)]
        for d in self.down:
            skips.append(d(skips[-1]))
        h = skips.pop()
        for u in self.up:
            s = skips.pop()
            h = u(torch.cat([F.interpolate(h, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
        return torch.sigmoid(self.out(h))
