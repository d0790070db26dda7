"""Tri-plane field and renderer (EG3D / Portrait4D style, DESIGN.md §6).

Planes are ``[B, 3, C, R, R]`` in the order (x,y), (y,z), (z,x). A point p is looked up on each
plane at ``p / box_half`` with ``grid_sample`` (bilinear, ``align_corners=False``, zero padding):
the plane's first named axis is the grid's x (column), the second its y (row). The three
features are averaged and decoded by ``OSGDecoder`` into a raw density and a feature vector whose
first 3 channels are RGB; ``models.rendering.volume.render_rays`` does the rest (softplus(σ−1)).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import cameras as cams
from models.amp import compute_dtype, no_autocast
from models.config import RenderConfig
from models.rendering.volume import render_rays, to_image

PLANE_AXES = ((0, 1), (1, 2), (2, 0))  # (x,y), (y,z), (z,x)
# Samples per render call in deterministic CPU inference. One call over a whole stage-3 frame batch (8 frames × 5
# views × 32² rays × 32 samples = 1.3 M samples, a 335 MB hidden layer) ran at 125 ms/frame on the 2-core VM; one
# frame per call (164 k samples) at 60 ms/frame: the decoder's tensors stay near the cache (issue 15).
CPU_CHUNK_SAMPLES = 1 << 18


def _lookups(planes: torch.Tensor, points: torch.Tensor, box_half: float) -> torch.Tensor:
    """grid_sample of ``points [B,M,3]`` on each of ``planes [B,3,C,R,R]`` → ``[B,3,C,M]`` (its own layout)."""
    b, n_planes, c, h, w = planes.shape
    if n_planes != 3:
        raise ValueError(f"expected 3 planes, got planes of shape {tuple(planes.shape)}")
    x, y, z = (points / box_half).unbind(-1)
    # the planes' (first, second) axes as PLANE_AXES orders them; slices and stacks, ~6× faster than indexing
    grid = torch.stack([torch.stack(pair, -1) for pair in ((x, y), (y, z), (z, x))], dim=1)  # [B,3,M,2]
    out = F.grid_sample(
        planes.reshape(b * 3, c, h, w),
        grid.reshape(b * 3, 1, -1, 2).to(planes.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [B*3, C, 1, M]
    return out.reshape(b, 3, c, -1)


def sample_triplane(planes: torch.Tensor, points: torch.Tensor, box_half: float) -> torch.Tensor:
    """Bilinear features of ``points [B,M,3]`` on ``planes [B,3,C,R,R]`` → ``[B,3,M,C]`` (zero outside the box)."""
    return _lookups(planes, points, box_half).transpose(2, 3)


def mean_triplane_features(planes: torch.Tensor, points: torch.Tensor, box_half: float) -> torch.Tensor:
    """The three planes' features of ``points [B,M,3]`` averaged → ``[B,M,C]``, contiguous: the same values as
    ``sample_triplane(...).mean(1)`` (same sum order), averaged in grid_sample's own ``[B,3,C,M]`` layout first so that
    neither the mean nor the decoder's first layer reads a strided tensor (issue 15: a tiny stage-3 render ~7% faster,
    README "Work and utilisation")."""
    return _lookups(planes, points, box_half).mean(1).transpose(1, 2).contiguous()


FEATURE_SCALE, FEATURE_SHIFT = 1 + 2 * 0.001, 0.001  # EG3D: sigmoid(·)·1.002 − 0.001


class _DecoderMLP(torch.autograd.Function):
    """``OSGDecoder``'s whole MLP as one autograd node: the same arithmetic as Linear → Softplus → two Linear heads
    → sigmoid·1.002−0.001, with both heads in one matmul and a hand-written backward that makes one pass per tensor
    instead of autograd's chain of small elementwise nodes and bias copies (issue 15: the decoder runs on every
    sample of every ray, ~130 k points a tiny step, and was the render's largest part on the CPU)."""

    @staticmethod
    def forward(ctx, x, w1, b1, w_head, b_head):
        dtype = compute_dtype(x)
        ctx.input_dtypes = tuple(t.dtype for t in (x, w1, b1, w_head, b_head))
        x, w1, b1, w_head, b_head = (t.to(dtype) for t in (x, w1, b1, w_head, b_head))
        with no_autocast(x.device.type):
            pre = torch.addmm(b1, x, w1.t())
            h = F.softplus(pre)
            z = torch.addmm(b_head, h, w_head.t())
            s = torch.sigmoid(z[:, 1:])
            feat = torch.add(s.new_tensor(-FEATURE_SHIFT), s, alpha=FEATURE_SCALE)
        ctx.save_for_backward(x, w1, w_head, pre, h, s)
        return z[:, :1], feat

    @staticmethod
    def backward(ctx, g_sigma, g_feat):
        x, w1, w_head, pre, h, s = ctx.saved_tensors
        g_z = torch.empty(s.shape[0], s.shape[1] + 1, dtype=x.dtype, device=x.device)
        g_z[:, :1] = g_sigma
        torch.ops.aten.sigmoid_backward.grad_input(g_feat.to(x.dtype) * FEATURE_SCALE, s, grad_input=g_z[:, 1:])
        g_pre = torch.ops.aten.softplus_backward(g_z @ w_head, pre, 1.0, 20.0)
        in_dtypes, need = ctx.input_dtypes, ctx.needs_input_grad
        g_x = (g_pre @ w1).to(in_dtypes[0]) if need[0] else None
        g_w1 = (g_pre.t() @ x).to(in_dtypes[1]) if need[1] else None
        g_b1 = g_pre.sum(0).to(in_dtypes[2]) if need[2] else None
        g_wh = (g_z.t() @ h).to(in_dtypes[3]) if need[3] else None
        g_bh = g_z.sum(0).to(in_dtypes[4]) if need[4] else None
        return g_x, g_w1, g_b1, g_wh, g_bh


class OSGDecoder(nn.Module):
    """Mean plane feature → FC → Softplus → density head (zero-init) and feature head (sigmoid·1.002−0.001).

    Evaluated by ``_DecoderMLP`` (one autograd node; the parameters and their names are those of the layers)."""

    def __init__(self, in_channels: int, hidden: int = 64, out_channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_channels, hidden), nn.Softplus())
        self.sigma = nn.Linear(hidden, 1)
        self.feature = nn.Linear(hidden, out_channels)
        nn.init.zeros_(self.sigma.weight)
        nn.init.zeros_(self.sigma.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = x.shape[:-1]
        w_head = torch.cat([self.sigma.weight, self.feature.weight])
        b_head = torch.cat([self.sigma.bias, self.feature.bias])
        fc = self.net[0]
        sigma, feat = _DecoderMLP.apply(x.reshape(-1, x.shape[-1]), fc.weight, fc.bias, w_head, b_head)
        return sigma.reshape(*lead, 1), feat.reshape(*lead, -1)

    def reference(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same decoder by plain layers and autograd (tests compare the two)."""
        h = self.net(x)
        return self.sigma(h), torch.sigmoid(self.feature(h)) * FEATURE_SCALE - FEATURE_SHIFT


def camera_rays(cameras: torch.Tensor, resolution: int, box_half: float):
    """Rays for cameras ``[B,25]`` or ``[B,K,25]``, flattened per batch entry: origins/dirs ``[B,K·H·W,3]``,
    near/far ``[B,K·H·W,1]``."""
    if cameras.dim() == 2:
        cameras = cameras[:, None]
    b, k, _ = cameras.shape
    flat = cameras.reshape(b * k, 25)
    origins, dirs = cams.generate_rays(flat, resolution)
    near, far = cams.ray_bounds(flat, box_half)
    hw = resolution * resolution
    near = near.reshape(b, k, 1, 1).expand(b, k, hw, 1).reshape(b, k * hw, 1)
    far = far.reshape(b, k, 1, 1).expand(b, k, hw, 1).reshape(b, k * hw, 1)
    return origins.reshape(b, k * hw, 3), dirs.reshape(b, k * hw, 3), near, far


class TriplaneRenderer(nn.Module):
    """Renders tri-planes ``[B,3,C,R,R]`` at cameras ``[B,K,25]`` without recomputing the planes per view."""

    def __init__(self, cfg: RenderConfig, triplane_channels: int):
        super().__init__()
        self.cfg = cfg
        self.decoder = OSGDecoder(triplane_channels, cfg.decoder_hidden, cfg.feature_channels)

    def field(self, planes: torch.Tensor):
        """The tri-plane as a ``field_fn`` for ``render_rays``."""

        def fn(points: torch.Tensor, directions: torch.Tensor):
            return self.decoder(mean_triplane_features(planes, points, self.cfg.box_half))

        return fn

    @staticmethod
    def _cpu_inference_chunk(planes, cameras, res: int, samples: int, perturb: bool) -> int:
        """Tri-planes per render call: all of them, except in deterministic CPU inference (stage 3, validation),
        where batch entries are rendered ``CPU_CHUNK_SAMPLES`` samples at a time (same values: entries are
        independent)."""
        b = planes.shape[0]
        if perturb or torch.is_grad_enabled() or planes.device.type != "cpu":
            return b
        views = cameras.shape[1] if cameras.dim() == 3 else 1
        return max(1, CPU_CHUNK_SAMPLES // (views * res * res * samples))

    def forward(
        self,
        planes: torch.Tensor,
        cameras: torch.Tensor,
        resolution: int | None = None,
        n_coarse: int | None = None,
        n_fine: int | None = None,
        generator: torch.Generator | None = None,
        perturb: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Images for every (tri-plane, camera): ``features [B·K,C,h,w]`` (in [0,1], no background),
        ``alpha``/``transmittance``/``depth`` ``[B·K,1,h,w]``. ``perturb`` defaults to ``self.training``."""
        res = resolution or self.cfg.neural_resolution
        if cameras.shape[0] != planes.shape[0]:
            raise ValueError(f"cameras batch {cameras.shape[0]} != tri-plane batch {planes.shape[0]}")
        n_coarse = self.cfg.n_coarse if n_coarse is None else n_coarse
        n_fine = self.cfg.n_fine if n_fine is None else n_fine
        perturb = self.training if perturb is None else perturb
        step = self._cpu_inference_chunk(planes, cameras, res, n_coarse + n_fine, perturb)
        if step < planes.shape[0]:
            parts = [
                self(planes[i : i + step], cameras[i : i + step], res, n_coarse, n_fine, generator, perturb)
                for i in range(0, planes.shape[0], step)
            ]
            return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        origins, dirs, near, far = camera_rays(cameras.to(planes.dtype), res, self.cfg.box_half)
        out = render_rays(
            self.field(planes),
            origins,
            dirs,
            near,
            far,
            n_coarse,
            n_fine,
            generator=generator,
            perturb=perturb,
        )
        return {key: to_image(out[key], res) for key in ("features", "alpha", "transmittance", "depth")}
