"""Reading a pseudo_mv store for training Ψ: the videos in memory, the random plan of a batch (source frame,
time step, views p ≠ q, real-target and real-driving replacements) and the tensors it selects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline_tasks.data.images import to_model_alpha, to_model_images
from storage_schemas import pseudo_mv as pm


@dataclass
class SamplePlan:
    """The random choices of one batch (arrays of length B)."""

    video: np.ndarray
    source_t: np.ndarray
    t: np.ndarray
    view_p: np.ndarray
    view_q: np.ndarray
    target_real: np.ndarray  # bool: target replaced by the real frame
    driving_real: np.ndarray  # bool: driving input replaced by the real frame


def draw_plan(
    rng: np.random.Generator,
    videos: np.ndarray,
    lengths: np.ndarray,
    k: int,
    p_target_real: float,
    p_driving_real: float,
) -> SamplePlan:
    """Draw a batch's (video, source frame, time step, views p ≠ q, replacements) — DESIGN.md §1 steps 1–3."""
    b = len(videos)
    n = lengths[videos]
    source_t = (rng.random(b) * n).astype(np.int64)
    t = (rng.random(b) * n).astype(np.int64)
    if k >= 2:
        p = rng.integers(0, k, b)
        q = (p + rng.integers(1, k, b)) % k
    else:
        p = q = np.zeros(b, np.int64)
    return SamplePlan(
        video=videos,
        source_t=source_t,
        t=t,
        view_p=p,
        view_q=q,
        target_real=rng.random(b) < p_target_real,
        driving_real=rng.random(b) < p_driving_real,
    )


class PseudoMVVideos:
    """Video groups of a ``pseudo_mv`` store, in memory (the tiny/small stores fit)."""

    NAMES = ("frames", "alpha", "frame_cameras", "frame_motion", "views", "view_alpha", "view_cameras", "view_motion")

    def __init__(self, store_path: Path, video_ids: list[str]):
        root = pm.open_read(store_path)
        self.ids = video_ids
        self.data = [{n: root[v][n][:] for n in self.NAMES} for v in video_ids]
        self.attrs = [dict(root[v].attrs) for v in video_ids]
        self.lengths = np.array([len(d["frames"]) for d in self.data])
        self.k = self.data[0]["views"].shape[1]

    def batch(self, plan: SamplePlan, device) -> dict[str, torch.Tensor]:
        """Tensors of a plan: source, driving input, target (+ alpha, camera) and the two motions."""
        src, drv, tgt, alpha, cams, m_s, m_d = [], [], [], [], [], [], []
        for i in range(len(plan.video)):
            d = self.data[plan.video[i]]
            s, t, p, q = plan.source_t[i], plan.t[i], plan.view_p[i], plan.view_q[i]
            src.append(d["frames"][s])
            m_s.append(d["frame_motion"][s])
            if plan.driving_real[i]:
                drv.append(d["frames"][t])
                m_d.append(d["frame_motion"][t])
            else:
                drv.append(d["views"][t, p])
                m_d.append(d["view_motion"][t, p])
            if plan.target_real[i]:
                tgt.append(d["frames"][t])
                alpha.append(d["alpha"][t])
                cams.append(d["frame_cameras"][t])
            else:
                tgt.append(d["views"][t, q])
                alpha.append(d["view_alpha"][t, q])
                cams.append(d["view_cameras"][t, q])
        f = lambda xs: torch.from_numpy(np.stack(xs)).float().to(device)  # noqa: E731
        return {
            "source": to_model_images(np.stack(src)).to(device),
            "driving": to_model_images(np.stack(drv)).to(device),
            "target": to_model_images(np.stack(tgt)).to(device),
            "target_alpha": to_model_alpha(np.stack(alpha)).to(device),
            "cameras": f(cams),
            "motion_source": f(m_s),
            "motion_driving": f(m_d),
            "real": torch.from_numpy(plan.target_real.copy()).to(device),
        }


def split_videos(index: list[dict], n_val: int) -> tuple[list[str], list[str]]:
    ids = [e["video_id"] for e in index if e.get("status") == "converted"]
    if len(ids) < 2:
        return ids, ids  # one video: validate on it (reported as such)
    n_val = min(max(n_val, 1), len(ids) - 1)
    return ids[:-n_val], ids[-n_val:]
