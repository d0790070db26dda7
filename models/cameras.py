"""Cameras: the 25-vector label, look-at construction, random sampling, rays and projection.

Convention (the one every part of the project uses; DESIGN.md §6):

* World: the head is centred at the origin, +y is up, the face looks along +z.
* Camera axes are OpenCV's: x right, y down, z forward (the viewing direction).
* A camera is a 25-vector: ``cam2world`` (4×4, row-major, 16 values) followed by the
  normalised intrinsics ``K`` (3×3, row-major, 9 values). ``K`` is normalised by the image
  size, so one label serves every resolution: focal ``fx = fy = 1 / (2·tan(fov/2))`` with a 12°
  field of view (≈ 4.757) and principal point (0.5, 0.5).
* Pixel (i, j) (column i, row j) of a W×H image has normalised coordinates
  ``u = (i + 0.5) / W``, ``v = (j + 0.5) / H``; its ray direction in camera space is
  ``((u − cx)/fx, (v − cy)/fy, 1)``. Row 0 is the top of the image.
* Look-at from (yaw, pitch, radius): the camera sits at
  ``target + radius · (cos(pitch)·sin(yaw), sin(pitch), cos(pitch)·cos(yaw))`` and looks at
  ``target``. Yaw 0, pitch 0 is the frontal camera on +z; positive yaw moves the camera
  towards +x, positive pitch moves it up (it then looks down at the face).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FOV_DEGREES = 12.0
FOCAL_NORMALISED = 1.0 / (2.0 * math.tan(math.radians(FOV_DEGREES) / 2.0))  # ≈ 4.757
DEFAULT_RADIUS = 4.2
BOX_HALF = 0.65  # head box [−0.65, 0.65]³ (box_warp 1.3)


@dataclass(frozen=True)
class CameraRanges:
    """Ranges of random training cameras (DESIGN.md §6)."""

    yaw: float = 0.78  # yaw ~ U(−yaw, +yaw) rad
    pitch: float = 0.4  # pitch ~ U(−pitch, +pitch) rad
    radius_min: float = 3.65
    radius_max: float = 4.45


def intrinsics(batch: int = 1, fov_degrees: float = FOV_DEGREES, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 3×3 intrinsics, ``[batch, 3, 3]``."""
    f = 1.0 / (2.0 * math.tan(math.radians(fov_degrees) / 2.0))
    k = torch.tensor([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]], device=device, dtype=dtype)
    return k.expand(batch, 3, 3).clone()


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None, up: torch.Tensor | None = None) -> torch.Tensor:
    """cam2world ``[B, 4, 4]`` for cameras at ``eye [B, 3]`` looking at ``target [B, 3]``.

    ``up`` is the world up direction (default +y); the camera's y axis points opposite to it
    in the image plane (OpenCV: y down).
    """
    b = eye.shape[0]
    if target is None:
        target = torch.zeros_like(eye)
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], device=eye.device, dtype=eye.dtype).expand(b, 3)
    z = torch.nn.functional.normalize(target - eye, dim=-1)  # forward
    x = torch.nn.functional.normalize(torch.cross(z, up, dim=-1), dim=-1)  # right = forward × up
    y = torch.cross(z, x, dim=-1)  # down = forward × right
    m = torch.eye(4, device=eye.device, dtype=eye.dtype).repeat(b, 1, 1)
    m[:, :3, 0] = x
    m[:, :3, 1] = y
    m[:, :3, 2] = z
    m[:, :3, 3] = eye
    return m


def orbit_cam2world(
    yaw: torch.Tensor,
    pitch: torch.Tensor,
    radius: torch.Tensor | float = DEFAULT_RADIUS,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """cam2world ``[B, 4, 4]`` on a sphere around ``target`` (default origin); see module docstring."""
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1)
    pitch = torch.as_tensor(pitch, dtype=torch.float32, device=yaw.device).reshape(-1)
    radius = torch.as_tensor(radius, dtype=torch.float32, device=yaw.device).reshape(-1).expand_as(yaw)
    if target is None:
        target = torch.zeros(yaw.shape[0], 3, device=yaw.device)
    offset = torch.stack(
        [torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch), torch.cos(pitch) * torch.cos(yaw)], dim=-1
    )
    eye = target + radius[:, None] * offset
    return look_at(eye, target)


def to_label(cam2world: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
    """Pack ``cam2world [B,4,4]`` and normalised ``K [B,3,3]`` into the 25-vector ``[B, 25]``."""
    b = cam2world.shape[0]
    if k is None:
        k = intrinsics(b, device=cam2world.device, dtype=cam2world.dtype)
    return torch.cat([cam2world.reshape(b, 16), k.reshape(b, 9)], dim=-1)


def from_label(label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack ``[..., 25]`` into ``cam2world [..., 4, 4]`` and ``K [..., 3, 3]``."""
    lead = label.shape[:-1]
    return label[..., :16].reshape(*lead, 4, 4), label[..., 16:25].reshape(*lead, 3, 3)


def orbit_label(
    yaw, pitch, radius=DEFAULT_RADIUS, target: torch.Tensor | None = None, fov_degrees: float = FOV_DEGREES
) -> torch.Tensor:
    """25-vector cameras ``[B, 25]`` from yaw/pitch/radius (look-at the origin or ``target``)."""
    c2w = orbit_cam2world(yaw, pitch, radius, target)
    return to_label(c2w, intrinsics(c2w.shape[0], fov_degrees, device=c2w.device))


def sample_cameras(
    n: int, generator: torch.Generator | None = None, ranges: CameraRanges = CameraRanges()
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random training cameras; returns (labels ``[n, 25]``, yaw/pitch/radius ``[n, 3]``)."""
    u = torch.rand(n, 3, generator=generator)
    yaw = (u[:, 0] * 2 - 1) * ranges.yaw
    pitch = (u[:, 1] * 2 - 1) * ranges.pitch
    radius = ranges.radius_min + u[:, 2] * (ranges.radius_max - ranges.radius_min)
    return orbit_label(yaw, pitch, radius), torch.stack([yaw, pitch, radius], dim=-1)


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised pixel-centre coordinates ``[H*W, 2]`` (u, v), row-major (row 0 = top)."""
    v, u = torch.meshgrid(
        (torch.arange(height, device=device, dtype=dtype) + 0.5) / height,
        (torch.arange(width, device=device, dtype=dtype) + 0.5) / width,
        indexing="ij",
    )
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def generate_rays(label: torch.Tensor, height: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays of every pixel: (origins ``[B, H*W, 3]``, unit directions ``[B, H*W, 3]``)."""
    width = height if width is None else width
    c2w, k = from_label(label)
    uv = pixel_grid(height, width, device=label.device, dtype=label.dtype)  # [N, 2]
    fx, fy = k[:, 0, 0, None], k[:, 1, 1, None]
    cx, cy = k[:, 0, 2, None], k[:, 1, 2, None]
    x = (uv[None, :, 0] - cx) / fx
    y = (uv[None, :, 1] - cy) / fy
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [B, N, 3]
    d_world = torch.nn.functional.normalize(d_cam @ c2w[:, :3, :3].transpose(1, 2), dim=-1)
    origins = c2w[:, None, :3, 3].expand_as(d_world)
    return origins, d_world


def ray_bounds(label: torch.Tensor, box_half: float = BOX_HALF) -> tuple[torch.Tensor, torch.Tensor]:
    """Near/far ``[B, 1]``: camera distance to the origin ∓ the head box half-size (DESIGN.md §6)."""
    c2w, _ = from_label(label)
    dist = c2w[:, :3, 3].norm(dim=-1, keepdim=True)
    return (dist - box_half).clamp_min(1e-3), dist + box_half


def project(points: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points ``[B, N, 3]``: (normalised pixel coords ``[B, N, 2]``, camera-space z ``[B, N]``).

    Pixel coords follow ``pixel_grid``: multiply by (W, H) and subtract 0.5 for pixel indices.
    """
    c2w, k = from_label(label)
    r = c2w[:, :3, :3]
    t = c2w[:, :3, 3]
    p_cam = (points - t[:, None, :]) @ r  # world2cam rotation is Rᵀ: p_cam = Rᵀ (p − t)
    z = p_cam[..., 2]
    xy = p_cam[..., :2] / z[..., None].clamp_min(1e-8)
    uv = (
        xy * torch.stack([k[:, 0, 0], k[:, 1, 1]], dim=-1)[:, None, :]
        + torch.stack([k[:, 0, 2], k[:, 1, 2]], dim=-1)[:, None, :]
    )
    return uv, z


def rotation_yaw_pitch_roll(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """World rotation ``[B, 3, 3]`` = R_y(yaw) · R_x(pitch) · R_z(roll) (right-handed, radians).

    Used for rigid head pose: positive yaw turns the face (+z) towards +x, positive pitch
    rotates +y towards +z (the face tilts down), positive roll rotates +x towards +y.
    """
    yaw, pitch, roll = (torch.as_tensor(a, dtype=torch.float32).reshape(-1) for a in (yaw, pitch, roll))
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    zeros, ones = torch.zeros_like(yaw), torch.ones_like(yaw)
    ry = torch.stack([cy, zeros, sy, zeros, ones, zeros, -sy, zeros, cy], -1).reshape(-1, 3, 3)
    rx = torch.stack([ones, zeros, zeros, zeros, cp, -sp, zeros, sp, cp], -1).reshape(-1, 3, 3)
    rz = torch.stack([cr, -sr, zeros, sr, cr, zeros, zeros, zeros, ones], -1).reshape(-1, 3, 3)
    return ry @ rx @ rz


def transform_label(label: torch.Tensor, world_transform: torch.Tensor) -> torch.Tensor:
    """Apply a rigid world transform ``[B, 4, 4]`` to cameras: cam2world' = T · cam2world."""
    c2w, k = from_label(label)
    return to_label(world_transform @ c2w, k)
