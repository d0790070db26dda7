"""How much arithmetic a training step and a converted frame are: the numbers a utilisation is stated against.

The networks' matmuls and convolutions (encoders, transformer, tri-plane decoder, the renderer's MLP and its
compositing einsums, SR, E_mot) are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a real run at
the given batch. What it does not see is the renderer's tri-plane lookups (``grid_sample``: per sample and plane,
4 bilinear taps × C channels, a multiply-add each) and the ray marching's elementwise work (densities,
transmittance, importance sampling): :func:`renderer_uncounted_flops` counts those analytically. A backward pass
is counted by the counter as it runs; the analytic part is doubled for it (one gradient per input of each
multiply-add). One multiply-add = 2 FLOPs throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import cameras as cams
from models.config import ModelConfig, RenderConfig

PER_SAMPLE_ELEMENTWISE = 24  # softplus, α, transmittance product, weights, depth/feature sums: ~24 FLOPs a sample


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs ``fn()`` performs in the ops ``FlopCounterMode`` knows (matmul, conv, attention, einsum)."""
    with FlopCounterMode(display=False) as mode:
        fn()
    return int(mode.get_total_flops())


def renderer_uncounted_flops(render: RenderConfig, triplane_channels: int, rays: int, backward: bool) -> int:
    """The renderer's work ``FlopCounterMode`` misses for ``rays`` rays: 3 bilinear plane lookups per sample
    (4 taps × C channels × 2 FLOPs) and their mean, the per-sample compositing, and the importance sampling's
    inverse CDF (a search over the coarse bins per fine sample). ×3 with the backward pass."""
    samples = render.n_coarse + render.n_fine
    lookup = 3 * 4 * 2 * triplane_channels + 3 * triplane_channels
    importance = render.n_fine * 2 * max(render.n_coarse, 1)
    forward = rays * (samples * (lookup + PER_SAMPLE_ELEMENTWISE) + importance)
    return forward * (3 if backward else 1)


def rays_per_image(render: RenderConfig) -> int:
    return render.neural_resolution**2


def psi_step(cfg: ModelConfig, batch: int, static: bool, device: str = "cpu") -> Callable[[], None]:
    """One generator step of Ψ3d (``static``) or Ψ at ``batch``, without the optimiser: forward, render at one
    target camera, backward of a scalar loss on the image and the raw image (what is counted and timed)."""
    from models.psi import build_psi

    torch.manual_seed(0)
    psi = build_psi(cfg, static=static).to(device).train()
    res = cfg.psi.image_resolution
    x = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    m = torch.randn(batch, cfg.psi.motion_dim, device=device)
    c = cams.sample_cameras(batch, torch.Generator().manual_seed(0))[0].to(device)

    def step():
        out = psi.render(psi(x, m, m), c)
        (out["image"].float().mean() + out["image_raw"].float().mean()).backward()
        psi.zero_grad(set_to_none=True)

    return step


def psi_step_flops(cfg: ModelConfig, batch: int, static: bool, device: str = "cpu") -> dict[str, int]:
    """FLOPs of :func:`psi_step` (the discriminator is counted apart, :func:`discriminator_step_flops`):
    ``{"counted", "renderer_uncounted", "total"}``."""
    counted = counted_flops(psi_step(cfg, batch, static, device))
    extra = renderer_uncounted_flops(cfg.render, cfg.psi.triplane_channels, batch * rays_per_image(cfg.render), True)
    return {"counted": counted, "renderer_uncounted": extra, "total": counted + extra}


def discriminator_step_flops(cfg: ModelConfig, batch: int, device: str = "cpu") -> int:
    """FLOPs of one discriminator update: D on a real and a fake batch (image and raw image) + backward (no R1)."""
    from models.discriminator import DualDiscriminator

    d = DualDiscriminator(cfg.discriminator, cfg.render.image_resolution).to(device).train()
    res, raw = cfg.render.image_resolution, cfg.render.neural_resolution
    img = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    img_raw = torch.rand(batch, 3, raw, raw, device=device) * 2 - 1
    c = cams.sample_cameras(batch, torch.Generator().manual_seed(0))[0].to(device)

    def step():
        (d(img, img_raw, c).mean() - d(img.flip(0), img_raw.flip(0), c).mean()).backward()

    return counted_flops(step)


def converted_frame(cfg: ModelConfig, views: int, motion_encoder=None, device: str = "cpu") -> Callable[[], None]:
    """Stage 3's work for one frame: Ψ3d's forward on it, ``views`` renders of its tri-plane, and (when given)
    E_mot on the frame and its views."""
    from models.psi import build_psi

    torch.manual_seed(0)
    psi = build_psi(cfg, static=True).to(device).eval()
    res = cfg.psi.image_resolution
    x = torch.rand(1, 3, res, res, device=device) * 2 - 1
    c = cams.sample_cameras(views, torch.Generator().manual_seed(0))[0].to(device)[None]

    @torch.no_grad()
    def frame():
        out = psi.render(psi(x), c)
        if motion_encoder is not None:
            motion_encoder.encode(torch.cat([x, out["image"][0].float()]))

    return frame


def converted_frame_flops(cfg: ModelConfig, views: int, motion_encoder=None, device: str = "cpu") -> dict[str, int]:
    """FLOPs of :func:`converted_frame`: ``{"counted", "renderer_uncounted", "total"}``."""
    counted = counted_flops(converted_frame(cfg, views, motion_encoder, device))
    extra = renderer_uncounted_flops(cfg.render, cfg.psi.triplane_channels, views * rays_per_image(cfg.render), False)
    return {"counted": counted, "renderer_uncounted": extra, "total": counted + extra}


def matmul_peak_flops(device: str = "cpu", n: int = 2048, repeats: int = 5, dtype=torch.float32) -> float:
    """The device's attainable FLOP/s on a large square matmul (the best of ``repeats``): the CPU's peak figure."""
    import time

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
