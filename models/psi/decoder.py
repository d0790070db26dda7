"""From ViT tokens to tri-planes (official-implementation-facts §2, end of EncoderCanonical and DecoderTriplane)."""

from __future__ import annotations

import torch
import torch.nn as nn

from models import torchvision_compat as _tvc

# idempotent; before timm/lpips import torchvision (also when `models` was imported as a namespace package)
_tvc.install()
from timm.models.pvt_v2 import Block, OverlapPatchEmbed


def kaiming_init_convs(module: nn.Module, negative_slope: float = 0.2) -> None:
    """He-initialise every conv (fan-in, leaky ReLU) so signal variance survives the long conv
    chains at random init (PyTorch's default shrinks it ~3× per layer); biases to zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TokenUpsampler(nn.Module):
    """Tokens ``[B, G², D]`` → PixelShuffle(2) → n × (bilinear ×2 → conv → ReLU) → conv → ``[B, out, R, R]``."""

    def __init__(self, dim: int, channels: int, out_channels: int, n_up: int):
        super().__init__()
        self.shuffle = nn.PixelShuffle(2)
        layers: list[nn.Module] = []
        c = dim // 4
        for _ in range(n_up):
            layers += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c, channels, 3, padding=1),
                nn.ReLU(),
            ]
            c = channels
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)
        kaiming_init_convs(self, negative_slope=0.0)

    def forward(self, tokens: torch.Tensor, grid: int) -> torch.Tensor:
        b, n, d = tokens.shape
        x = tokens.transpose(1, 2).reshape(b, d, grid, grid)
        return self.net(self.shuffle(x).contiguous(memory_format=torch.channels_last)).contiguous()


class TriplaneDecoder(nn.Module):
    """[global-up, detail] → convs → overlap patch embedding (s2) → one SegFormer block with
    spatially reduced K/V → PixelShuffle → [·, global-up] → convs → ``conv_last`` (N(0, 0.15)) →
    tri-planes ``[B, 3, C, R, R]``."""

    def __init__(
        self,
        feat_channels: int,
        channels: int,
        embed_dim: int,
        heads: int,
        sr_ratio: int,
        triplane_channels: int,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.pre = nn.Sequential(
            nn.Conv2d(2 * feat_channels, 2 * channels, 3, padding=1),
            act(),
            nn.Conv2d(2 * channels, channels, 3, padding=1),
            act(),
        )
        self.patch_embed = OverlapPatchEmbed(patch_size=3, stride=2, in_chans=channels, embed_dim=embed_dim)
        self.block = Block(embed_dim, heads, mlp_ratio=mlp_ratio, sr_ratio=sr_ratio, qkv_bias=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.shuffle = nn.PixelShuffle(2)
        self.post = nn.Sequential(
            nn.Conv2d(embed_dim // 4 + feat_channels, 2 * channels, 3, padding=1),
            act(),
            nn.Conv2d(2 * channels, channels, 3, padding=1),
            act(),
            nn.Conv2d(channels, channels, 3, padding=1),
            act(),
        )
        kaiming_init_convs(self.pre)
        kaiming_init_convs(self.post)
        self.conv_last = nn.Conv2d(channels, 3 * triplane_channels, 3, padding=1)
        nn.init.normal_(self.conv_last.weight, 0.0, 0.15)
        nn.init.zeros_(self.conv_last.bias)
        self.triplane_channels = triplane_channels

    def forward(self, global_up: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        x = self.pre(torch.cat([global_up, detail], 1).contiguous(memory_format=torch.channels_last))
        t = self.patch_embed(x)  # [B, R/2, R/2, E]
        b, h, w, e = t.shape
        t = self.norm(self.block(t.reshape(b, h * w, e), (h, w)))
        x = self.shuffle(t.transpose(1, 2).reshape(b, e, h, w))
        x = self.conv_last(self.post(torch.cat([x, global_up], 1).contiguous(memory_format=torch.channels_last)))
        r = x.shape[-1]
        return x.contiguous().reshape(b, 3, self.triplane_channels, r, r)
