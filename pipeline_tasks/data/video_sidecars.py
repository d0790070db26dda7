"""Reading a ``synthetic_videos`` artifact: its index, the JSON sidecar of each video (ground truth per
frame: head-relative cameras, expression, pose, gaze) and the ``.npz`` of the generator's alpha and depth.
The stage writes them (pipeline_tasks/synthetic_videos.py); stage 3, Ψ's validation and the pseudo-view
check read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from storage_schemas.artifacts import Artifact

SIDECAR_FORMAT = "p4d-synthetic-video/2"
INDEX = "index.json"


def list_videos(art: Artifact) -> list[dict[str, Any]]:
    """The index of a ``synthetic_videos`` artifact with absolute ``mp4``/``sidecar`` paths."""
    rows = json.loads((Path(art.path) / INDEX).read_text())
    return [{**r, "mp4": str(Path(art.path) / r["mp4"]), "sidecar": str(Path(art.path) / r["sidecar"])} for r in rows]


def read_ground_truth_maps(sidecar_path: str | Path, sidecar: dict[str, Any]) -> dict[str, np.ndarray]:
    """The generator's per-frame ``alpha [T,H,W] u8`` and ``depth [T,H,W] f16`` named by a sidecar."""
    path = Path(sidecar_path).with_name(sidecar["maps"])
    with np.load(path) as f:
        maps = {k: f[k] for k in ("alpha", "depth")}
    if len(maps["alpha"]) != sidecar["n_frames"]:
        raise ValueError(f"{path}: alpha has {len(maps['alpha'])} frames for {sidecar['n_frames']}")
    return maps


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Load and check a sidecar; raises ``ValueError`` naming the file when it is not one."""
    path = Path(path)
    data = json.loads(path.read_text())
    if data.get("format") != SIDECAR_FORMAT:
        raise ValueError(
            f"{path}: not a synthetic-video sidecar (format {data.get('format')!r}, want {SIDECAR_FORMAT!r})"
        )
    for key in ("cameras", "world_cameras", "expression", "pose", "gaze"):
        if len(data[key]) != data["n_frames"]:
            raise ValueError(f"{path}: {key} has {len(data[key])} rows for {data['n_frames']} frames")
    return data
