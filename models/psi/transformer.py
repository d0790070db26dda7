"""Ψ's canonicalisation / reenactment ViT (official-implementation-facts §2, EncoderCanonical).

``BlockCross``: pre-LN residual block = cross-attention to motion tokens (output projection
zero-initialised, output × ``scale``) → spatially reducible self-attention → Mix-FFN (MLP with a
depth-wise conv). Self-attention and Mix-FFN are timm's PVT-v2 / SegFormer pieces.
``MotionTokens``: motion embedding → 2 × (Linear + LeakyReLU) → Linear → grid² tokens.

Every parameter of the cross-attention path has ``cross`` in its name (``cross_norm``,
``cross_norm_ctx``, ``cross_attn``) or belongs to ``maps*`` / ``proj_y*`` modules;
``models.psi.network.is_cross_attention_param`` relies on that.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import torchvision_compat as _tvc

# idempotent; before timm/lpips import torchvision (also when `models` was imported as a namespace package)
_tvc.install()
from timm.models.pvt_v2 import Attention, MlpWithDepthwiseConv


class CrossAttention(nn.Module):
    """Multi-head attention of image tokens (queries) over context tokens; zero-init output projection."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross-attention dim {dim} not divisible by heads {num_heads}")
        context_dim = context_dim or dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class BlockCross(nn.Module):
    """Cross-attention (× scale) → self-attention → Mix-FFN, each pre-LN residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, sr_ratio: int = 1):
        super().__init__()
        self.cross_norm = nn.LayerNorm(dim)
        self.cross_norm_ctx = nn.LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, sr_ratio=sr_ratio, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MlpWithDepthwiseConv(dim, int(dim * mlp_ratio))

    def forward(
        self, x: torch.Tensor, feat_size: tuple[int, int], context: torch.Tensor | None, scale: float
    ) -> torch.Tensor:
        if context is not None and scale != 0:
            x = x + scale * self.cross_attn(self.cross_norm(x), self.cross_norm_ctx(context))
        x = x + self.attn(self.norm1(x), feat_size)
        return x + self.mlp(self.norm2(x), feat_size)


class MotionMap(nn.Module):
    """Motion embedding → hidden code: (Linear + LeakyReLU(0.2)) × 2 (``g_motion_map_layers: 2``)."""

    def __init__(self, motion_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(motion_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.net(v)


class MotionTokens(nn.Module):
    """Hidden motion code → ``grid²`` key/value tokens of width ``dim`` (``proj_y``)."""

    def __init__(self, hidden: int, grid: int, dim: int):
        super().__init__()
        self.n_tokens, self.dim = grid * grid, dim
        self.proj = nn.Linear(hidden, self.n_tokens * dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h).reshape(h.shape[0], self.n_tokens, self.dim)
