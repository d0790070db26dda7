"""Ground truth of the synthetic world: an identity from its integer id, rendered at any
expression, pose, gaze and camera.

Identity ids are the seeds: ``identity_from_seed(i)`` draws shape α then z from
``torch.Generator().manual_seed(i)``, exactly as ``params.sample_params(1, that generator)`` does
first, so stage 1 (which samples each identity from its own generator) and evaluation agree.
``identity_ids(base_seed, n)`` gives disjoint id ranges per base seed (stage 1, videos and eval
use different base seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models import cameras as cam
from models.genhead import params as P
from models.genhead.procedural import HeadRender, ProceduralGenHead

ID_STRIDE = 1_000_000  # identities per base seed


def identity_ids(base_seed: int, n: int, start: int = 0) -> list[int]:
    """Ids ``base_seed·10⁶ + start … + n − 1``; disjoint for different base seeds (n ≤ 10⁶)."""
    if not 0 <= start and start + n <= ID_STRIDE:
        raise ValueError(f"identity index range [{start}, {start + n}) must lie in [0, {ID_STRIDE})")
    return [int(base_seed) * ID_STRIDE + start + i for i in range(n)]


@dataclass(frozen=True)
class SyntheticIdentity:
    identity: int
    shape: torch.Tensor  # [16]
    z: torch.Tensor  # [24]


def identity_generator(identity: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(identity))


def identity_from_seed(identity: int) -> SyntheticIdentity:
    """The identity's shape α and appearance z (what stays fixed across its expressions/views)."""
    g = identity_generator(identity)
    shape = torch.randn(1, len(P.SHAPE_NAMES), generator=g)[0]
    z = torch.randn(1, P.Z_DIM, generator=g)[0]
    return SyntheticIdentity(int(identity), shape, z)


def head_to_world(pose: torch.Tensor) -> torch.Tensor:
    """``[B, 4, 4]`` rigid transform T(γ) of head pose ``pose [B, 3]``: rotation about ``NECK_PIVOT``."""
    pose = torch.as_tensor(pose, dtype=torch.float32).reshape(-1, 3)
    rot = cam.rotation_yaw_pitch_roll(pose[:, 0], pose[:, 1], pose[:, 2])
    pivot = torch.tensor(P.NECK_PIVOT, dtype=torch.float32)
    t = torch.eye(4).repeat(len(pose), 1, 1)
    t[:, :3, :3] = rot
    t[:, :3, 3] = pivot - rot @ pivot
    return t


def head_relative_cameras(world_cameras: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Cameras in the head's canonical frame: T(γ)⁻¹ · c (DESIGN.md §2, "head pose is the camera").

    Rendering pose γ at world camera ``c`` equals rendering pose 0 at the returned camera, so every
    camera the synthetic world stores is of this kind and γ stays a label. ``world_cameras``
    ``[B, 25]`` or ``[B, V, 25]``; ``pose [B, 3]`` (one pose per leading entry).
    """
    world_cameras = torch.as_tensor(world_cameras, dtype=torch.float32)
    multi = world_cameras.ndim == 3
    b = world_cameras.shape[0]
    v = world_cameras.shape[1] if multi else 1
    inv = torch.linalg.inv(head_to_world(pose))  # [B, 4, 4]
    flat = world_cameras.reshape(b * v, 25)
    out = cam.transform_label(flat, inv.repeat_interleave(v, 0))
    return out.reshape(world_cameras.shape)


def _rows(value, b: int, dim: int, name: str) -> torch.Tensor:
    if value is None:
        return torch.zeros(b, dim)
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None].expand(b, -1)
    if t.shape != (b, dim):
        raise ValueError(f"{name} must be [{dim}] or [{b}, {dim}], got {tuple(t.shape)}")
    return t


class GroundTruth:
    """Render identities with given expression β, pose γ, gaze and cameras (defaults: neutral)."""

    def __init__(self, generator: ProceduralGenHead | None = None):
        self.generator = generator or ProceduralGenHead()

    def render(self, identities, cameras, resolution: int, expression=None, pose=None, gaze=None) -> HeadRender:
        """``identities``: an id, a ``SyntheticIdentity`` or a list of either (B); ``cameras``
        ``[B,25]`` or ``[B,V,25]``; ``expression/pose/gaze`` ``[dim]`` (shared) or ``[B, dim]``."""
        if not isinstance(identities, (list, tuple)):
            identities = [identities]
        ids = [i if isinstance(i, SyntheticIdentity) else identity_from_seed(i) for i in identities]
        b = len(ids)
        cameras = torch.as_tensor(cameras, dtype=torch.float32)
        if cameras.ndim == 1:
            cameras = cameras[None].expand(b, -1)
        return self.generator.render(
            torch.stack([i.shape for i in ids]),
            _rows(expression, b, len(P.EXPRESSION_NAMES), "expression"),
            _rows(pose, b, 3, "pose"),
            _rows(gaze, b, 2, "gaze"),
            torch.stack([i.z for i in ids]),
            cameras,
            resolution,
        )
