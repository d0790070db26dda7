"""Reading a genhead_samples store for training Ψ3d: identities × views with cameras, alpha and depth, the
(source, target) view draws and the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline_tasks.data.images import to_model_alpha, to_model_images
from pipeline_tasks.eval.benchmark_set import NovelViewSet, render_novel_view_set
from storage_schemas import genhead_samples as gs


class GenHeadViews:
    """Identities of a ``genhead_samples`` store; held in memory when small enough, else read per batch."""

    def __init__(self, store_path: Path, in_memory_limit_mb: float = 4096):
        self.group = gs.open_read(store_path)
        self.n, self.views = self.group["images"].shape[:2]
        self.resolution = self.group["images"].shape[2]
        size_mb = self.group["images"].nbytes / 2**20
        self._cache = None
        self.mean_train_image: torch.Tensor | None = None  # set by the trainer (a validation baseline)
        if size_mb <= in_memory_limit_mb:
            self._cache = {k: self.group[k][:] for k in ("images", "alpha", "depth", "cameras")}

    def get(self, name: str, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if self._cache is not None:
            return self._cache[name][ids]
        order = np.argsort(ids)
        data = self.group[name].get_orthogonal_selection((ids[order],))
        out = np.empty_like(data)
        out[order] = data
        return out

    def pairs(self, ids: np.ndarray, p: np.ndarray, q: np.ndarray, device: torch.device):
        """(source images, target images, target alpha, target depth, target cameras) for identities ``ids``.

        ``q`` is ``[B]`` (one target view each) or ``[B, K]`` (K target views each: targets ``[B, K, …]``)."""
        imgs, alpha, cams = self.get("images", ids), self.get("alpha", ids), self.get("cameras", ids)
        depth = self.get("depth", ids)
        r = np.arange(len(ids)) if np.ndim(q) == 1 else np.arange(len(ids))[:, None]
        return (
            to_model_images(imgs[np.arange(len(ids)), p]).to(device),
            to_model_images(imgs[r, q]).to(device),
            to_model_alpha(alpha[r, q]).to(device),
            torch.from_numpy(depth[r, q].astype(np.float32)).unsqueeze(-3).to(device),
            torch.from_numpy(cams[r, q]).float().to(device),
        )

    def most_frontal_view(self, ids: np.ndarray) -> np.ndarray:
        """Per identity, the stored view whose head-relative camera looks most nearly along the face's axis (+z)."""
        cams = self.get("cameras", ids)[..., :16].reshape(len(ids), self.views, 4, 4)
        pos = cams[..., :3, 3]
        return np.argmax(pos[..., 2] / np.linalg.norm(pos, axis=-1).clip(1e-9), axis=1)

    def novel_view_set(self, ids: np.ndarray, yaw_bins: list[float]) -> NovelViewSet:
        """Identities ``ids`` of the store re-rendered (pose 0) at the frontal camera and the yaw bins."""
        ids = np.asarray(ids)
        labels = {k: self.group[k].get_orthogonal_selection((ids,)) for k in ("shape", "expression", "gaze", "z")}
        return render_novel_view_set(
            labels["shape"], labels["expression"], labels["gaze"], labels["z"], yaw_bins, self.resolution
        )


def draw_views(
    rng: np.random.Generator,
    n: int,
    views: int,
    k: int,
    preferred: np.ndarray | None = None,
    preferred_p: float = 0.0,
    source_target_p: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Source view ``p`` [n] and target views ``q`` ≠ p: [n] when ``k`` = 1, else [n, k] distinct per row.

    ``preferred`` [n]: a view per row taken as the source with probability ``preferred_p`` (else uniform).
    ``source_target_p``: probability that a row's (first) target is the source view itself (reconstruction);
    at 0 no extra number is drawn, so runs without it are unchanged."""
    if not 1 <= k <= views - 1:
        raise ValueError(f"psi3d.targets_per_source={k}: must be between 1 and views_per_identity − 1 = {views - 1}")
    p = rng.integers(0, views, n)
    if preferred is not None and preferred_p > 0:
        p = np.where(rng.random(n) < preferred_p, np.asarray(preferred), p)
    if k == 1:
        q = (p + rng.integers(1, views, n)) % views
    else:
        offsets = np.stack([rng.permutation(views - 1)[:k] + 1 for _ in range(n)])
        q = (p[:, None] + offsets) % views
    if source_target_p > 0:
        same = rng.random(n) < source_target_p
        if k == 1:
            q = np.where(same, p, q)
        else:
            q[:, 0] = np.where(same, p, q[:, 0])
    return p, q


def split_identities(n: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = min(max(n_val, 1), n - 1)
    return np.arange(n - n_val), np.arange(n - n_val, n)
