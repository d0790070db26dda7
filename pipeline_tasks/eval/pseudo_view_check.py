"""Are stage 3's pseudo views novel views? Compare them with the synthetic world's truth.

For each converted synthetic video of a ``pseudo_mv`` store (a group whose attributes name its
ground-truth sidecar), a few frames' K views are compared with the true renders of that identity,
with the frame's expression and gaze, at the views' own (head-relative) cameras; beside them the
frame itself copied to every view (copy-input). Views that are only blurred copies of the frame
score at or below copy-input; views of a head that turns with the camera score above it.
Used by stage 3 (its manifest) and stage 5 (the Ψ report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.genhead.ground_truth import GroundTruth
from pipeline_tasks.data.video_sidecars import read_sidecar
from pipeline_tasks.eval.metrics import psnr, soft_iou
from storage_schemas import pseudo_mv as pm


def _images(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u8)).float().div(127.5).sub(1).movedim(-1, -3)


@torch.no_grad()
def pseudo_view_fidelity(
    store_path: str | Path, max_frames_per_video: int = 6, gt: GroundTruth | None = None
) -> dict[str, Any] | None:
    """PSNR of the views and of copy-the-frame against the truth, and soft IoU of the views' alpha.

    Returns ``None`` when the store has no synthetic video (user videos have no ground truth)."""
    gt = gt or GroundTruth()
    root = pm.open_read(store_path)
    rows = []
    for entry in pm.read_index(store_path):
        if entry.get("status") != "converted":
            continue
        grp = root[entry["video_id"]]
        sidecar = grp.attrs.get("sidecar")
        if not sidecar or not Path(sidecar).is_file():
            continue
        side = read_sidecar(sidecar)
        idx = np.asarray(grp.attrs["frame_indices"])
        pick = np.unique(np.linspace(0, len(idx) - 1, min(max_frames_per_video, len(idx))).round().astype(int))
        views = _images(grp["views"].get_orthogonal_selection((pick,)))  # [t, K, 3, H, W]
        frames = _images(grp["frames"].get_orthogonal_selection((pick,)))  # [t, 3, H, W]
        view_alpha = (
            torch.from_numpy(grp["view_alpha"].get_orthogonal_selection((pick,))).float().div(255).unsqueeze(-3)
        )
        cams = torch.from_numpy(grp["view_cameras"].get_orthogonal_selection((pick,)))  # [t, K, 25]
        t, k = views.shape[:2]
        src = idx[pick]
        expr = torch.tensor(side["expression"], dtype=torch.float32)[src]
        gaze = torch.tensor(side["gaze"], dtype=torch.float32)[src]
        truth = gt.render([side["identity"]] * t, cams, views.shape[-1], expression=expr, gaze=gaze)
        flat = lambda x: x.reshape(t * k, *x.shape[2:])  # noqa: E731
        rows.append(
            {
                "video_id": entry["video_id"],
                "frames": int(t),
                "psnr_views": float(psnr(flat(views), flat(truth.rgb.clamp(-1, 1))).mean()),
                "psnr_copy_frame": float(psnr(frames.repeat_interleave(k, 0), flat(truth.rgb.clamp(-1, 1))).mean()),
                "soft_iou_views": float(soft_iou(flat(view_alpha), flat(truth.alpha)).mean()),
            }
        )
    if not rows:
        return None
    w = np.array([r["frames"] for r in rows], float)
    avg = lambda key: float(np.average([r[key] for r in rows], weights=w))  # noqa: E731
    out = {
        "videos": len(rows),
        "frames": int(w.sum()),
        "views": int(w.sum()) * k,
        "psnr_views": avg("psnr_views"),
        "psnr_copy_frame": avg("psnr_copy_frame"),
        "soft_iou_views": avg("soft_iou_views"),
    }
    out["margin_vs_copy_frame"] = out["psnr_views"] - out["psnr_copy_frame"]
    out["per_video"] = rows
    return out
