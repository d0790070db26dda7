"""``genhead_samples/store.zarr``: multi-view images of synthetic heads (DESIGN.md §5).

One sample is one identity with V views: ``images [N,V,H,W,3] u8``, ``alpha [N,V,H,W] u8``,
``depth [N,V,H,W] f16`` (ray distance of the surface; meaningful where alpha > 0),
``cameras [N,V,25] f32`` — **head-relative** (the head's canonical frame: rendering pose 0 at these
cameras gives the stored images; schema v2, DESIGN.md §2) — and its parameters ``shape [N,S]``, ``expression [N,E]``,
``pose [N,P]``, ``gaze [N,G]``, ``z [N,Z]`` (f32) and ``identity [N] i64``. One chunk is one
identity (a training read); a shard holds ``shard_identities`` identities and is the unit of
writing and of resuming. Attributes: generator backend, resolution, parameter names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr

from storage_schemas.zarr_schema import ArraySpec, GroupSchema, SchemaError, create_root, finalize, open_group

SCHEMA_VERSION = 2  # v2: head-relative cameras, depth
SCHEMA = GroupSchema(
    name="genhead_samples",
    version=SCHEMA_VERSION,
    arrays=(
        ArraySpec("images", "uint8", ("identity", "view", "height", "width", "rgb")),
        ArraySpec("alpha", "uint8", ("identity", "view", "height", "width")),
        ArraySpec("depth", "float16", ("identity", "view", "height", "width")),
        ArraySpec("cameras", "float32", ("identity", "view", "camera")),
        ArraySpec("shape", "float32", ("identity", "shape_param")),
        ArraySpec("expression", "float32", ("identity", "expression_param")),
        ArraySpec("pose", "float32", ("identity", "pose_param")),
        ArraySpec("gaze", "float32", ("identity", "gaze_param")),
        ArraySpec("z", "float32", ("identity", "z_dim")),
        ArraySpec("identity", "int64", ("identity",)),
    ),
    required_attrs=("generator_backend", "resolution", "parameter_names"),
)

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "SchemaError",
    "create",
    "append",
    "num_samples",
    "open_read",
    "validate",
    "finalize",
]


def create(
    store_path: str | Path,
    n_views: int,
    resolution: int,
    n_shape: int,
    n_expression: int,
    n_pose: int,
    n_gaze: int,
    n_z: int,
    shard_identities: int = 16,
    attrs: Mapping[str, Any] | None = None,
) -> zarr.Group:
    sizes = {
        "view": n_views,
        "height": resolution,
        "width": resolution,
        "rgb": 3,
        "camera": 25,
        "shape_param": n_shape,
        "expression_param": n_expression,
        "pose_param": n_pose,
        "gaze_param": n_gaze,
        "z_dim": n_z,
    }
    attrs = {"resolution": resolution, **dict(attrs or {})}
    return SCHEMA.create(create_root(store_path), sizes, shard_identities, attrs)


def append(store_path: str | Path, block: Mapping[str, np.ndarray]) -> int:
    """Append whole identities (ideally a whole shard); returns the number of identities stored."""
    return SCHEMA.append(open_group(store_path, mode="r+"), block)


def num_samples(store_path: str | Path) -> int:
    """Identities stored so far (0 if the store does not exist yet)."""
    if not (Path(store_path) / "zarr.json").exists():
        return 0
    return SCHEMA.committed(open_group(store_path, mode="r+"))


def open_read(store_path: str | Path) -> zarr.Group:
    return open_group(store_path, mode="r")


def validate(store_path: str | Path) -> None:
    """Raise :class:`SchemaError` listing every problem, with the store path in the message."""
    try:
        group = open_group(store_path, mode="r", consolidated=False)
    except FileNotFoundError as exc:
        raise SchemaError(store_path, [str(exc)]) from None
    problems = SCHEMA.problems(group, str(store_path))
    if not problems:  # content: a camera with zero focal length is a sample that was never written (a zero-filled gap)
        fx = np.asarray(group["cameras"][:, :, 16])
        bad = np.flatnonzero((fx <= 0).any(axis=1))
        if len(bad):
            problems.append(
                f"{store_path}/cameras: {len(bad)} sample(s) with a zero camera (never written), first at "
                f"index {int(bad[0])}; delete the store and rerun the stage"
            )
    if problems:
        raise SchemaError(store_path, problems)
