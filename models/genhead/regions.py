"""Where the mouth and the eyes are in an image of the synthetic head: boxes in the head's canonical
frame, projected by the camera.

Whole-frame PSNR barely sees expression (the truth with the source expression and with the driving
expression differ by ~27 dB, far less than a model's error), so reenactment is also scored inside
these regions. The boxes are fixed for the average head (``params.neutral``) and generous enough to
hold the mouth with the jaw open and the eyes with the brows raised for every sampled shape; the
image mask of a region is the bounding rectangle of its box's projected corners (``cameras``
head-relative, as every camera of the synthetic world is).
"""

from __future__ import annotations

import torch

from models import cameras as cam

# name → ((x0, x1), (y0, y1), (z0, z1)) in head units (subject faces +z, +y up)
REGIONS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "mouth": ((-0.13, 0.13), (-0.29, -0.11), (0.18, 0.38)),
    "eyes": ((-0.21, 0.21), (-0.02, 0.21), (0.18, 0.36)),
}


def _corners(box) -> torch.Tensor:
    (x0, x1), (y0, y1), (z0, z1) = box
    return torch.tensor([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], dtype=torch.float32)


def region_masks(
    cameras: torch.Tensor, resolution: int, names: tuple[str, ...] = tuple(REGIONS)
) -> dict[str, torch.Tensor]:
    """``{name: [M, 1, H, W]}`` float masks (1 inside the projected region) for cameras ``[M, 25]``."""
    cameras = torch.as_tensor(cameras, dtype=torch.float32).reshape(-1, 25)
    m = cameras.shape[0]
    centres = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution  # pixel centres, normalised
    out = {}
    for name in names:
        uv, _ = cam.project(_corners(REGIONS[name])[None].expand(m, 8, 3), cameras)  # [M, 8, 2]
        lo, hi = uv.amin(1), uv.amax(1)  # [M, 2]
        inside_u = (centres[None] >= lo[:, :1]) & (centres[None] <= hi[:, :1])  # [M, W]
        inside_v = (centres[None] >= lo[:, 1:]) & (centres[None] <= hi[:, 1:])  # [M, H]
        out[name] = (inside_v[:, :, None] & inside_u[:, None, :]).float()[:, None]
    return out
