"""Reading an analyser_samples (or genhead_samples) store for E_mot: images with their expression, gaze and
identity labels, partners of the same identity, the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storage_schemas import genhead_samples as gs


class LabelledViews:
    """Images and labels of a ``genhead_samples`` store. Labels are held in memory; images too when
    they fit in ``in_memory_limit_mb``, else they are read per batch (one chunk per sample)."""

    def __init__(self, store_path: str | Path, in_memory_limit_mb: float = 2048):
        self.store_path = Path(store_path)
        group = gs.open_read(self.store_path)
        self.images = group["images"]
        self.n, self.views, self.resolution = self.images.shape[0], self.images.shape[1], self.images.shape[2]
        if self.n == 0:
            raise ValueError(f"{self.store_path} holds no samples")
        self.expression = np.asarray(group["expression"][:], np.float32)
        self.gaze = np.asarray(group["gaze"][:], np.float32)
        self.identity = np.asarray(group["identity"][:], np.int64)
        self.cameras = (
            np.asarray(group["cameras"][:], np.float32) if "cameras" in group else None
        )  # [N, V, 25] head-relative
        names = dict(group.attrs).get("parameter_names", {})
        self.expression_names = list(
            names.get("expression") or [f"expression_{i}" for i in range(self.expression.shape[1])]
        )
        self.gaze_names = list(names.get("gaze") or [f"gaze_{i}" for i in range(self.gaze.shape[1])])
        if len(self.expression_names) != self.expression.shape[1] or len(self.gaze_names) != self.gaze.shape[1]:
            raise ValueError(f"{self.store_path}: parameter_names do not match the expression/gaze array widths")
        if self.images.nbytes / 2**20 <= in_memory_limit_mb:
            self.images = self.images[:]

    def get_images(self, ids: np.ndarray) -> np.ndarray:
        """``[len(ids), V, H, W, 3]`` uint8 in the order of ``ids``."""
        ids = np.asarray(ids)
        if isinstance(self.images, np.ndarray):
            return self.images[ids]
        uniq, inverse = np.unique(ids, return_inverse=True)
        return self.images.get_orthogonal_selection((uniq,))[inverse]

    def rows_by_identity(self, allowed: np.ndarray) -> dict[int, np.ndarray]:
        """Identity label → its sample ids among ``allowed``."""
        allowed = np.sort(np.asarray(allowed))
        ident = self.identity[allowed]
        return {int(k): allowed[ident == k] for k in np.unique(ident)}

    def partners(
        self, ids: np.ndarray, rows_of: dict[int, np.ndarray], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each sample in ``ids``: another sample of the same identity (``rows_of``, from
        :meth:`rows_by_identity`) when there is one, else the sample itself; returns (partner ids,
        whether it is the sample itself)."""
        out, alone = np.asarray(ids, np.int64).copy(), np.ones(len(ids), bool)
        for k, i in enumerate(ids):
            others = rows_of[int(self.identity[i])]
            others = others[others != i]
            if len(others):
                out[k], alone[k] = others[rng.integers(0, len(others))], False
        return out, alone

    def split(self, val_identities: int) -> tuple[np.ndarray, np.ndarray]:
        """(train sample ids, held-out sample ids): held out = samples of the last ``val_identities`` identities."""
        _, first = np.unique(self.identity, return_index=True)
        order = self.identity[np.sort(first)]  # identities in store order
        if len(order) < 2:
            raise ValueError(f"{self.store_path}: needs ≥ 2 identities to hold some out, has {len(order)}")
        k = min(max(int(val_identities), 1), len(order) - 1)
        held = np.isin(self.identity, order[-k:])
        return np.flatnonzero(~held), np.flatnonzero(held)
