"""Crop and alignment: scale + translation (no rotation) from the 5 alignment points to the canonical framing.

As in the published pipeline the crop never rotates: the head's roll stays in the image and goes
into the camera. A crop is a square window of the source frame: centre ``(cx, cy)`` and side
``size`` in continuous source pixels; crop-normalised coords are ``q = (p − c) / size + 0.5``.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline_tasks.face.canonical import ALIGN_POINTS, canonical_crop_points

_BORDERS = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}


def estimate_crop(points: np.ndarray, canonical: np.ndarray | None = None) -> np.ndarray:
    """Crop ``(cx, cy, size)`` mapping ``points [5, 2]`` (source px, order ALIGN_POINTS) onto the canonical ones.

    Least squares over scale and translation with a rotation-invariant scale (ratio of RMS spreads),
    so an in-plane rolled face keeps its size.
    """
    q = canonical_crop_points(ALIGN_POINTS) if canonical is None else canonical
    p = np.asarray(points, dtype=np.float64)
    pm, qm = p.mean(0), q.mean(0)
    s = np.sqrt(((q - qm) ** 2).sum() / max(((p - pm) ** 2).sum(), 1e-12))
    size = 1.0 / s
    centre = pm + (0.5 - qm) * size
    return np.array([centre[0], centre[1], size])


def to_crop_coords(points: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Source px ``[..., 2]`` → crop-normalised coords for one crop ``(cx, cy, size)``."""
    return (np.asarray(points) - crop[:2]) / crop[2] + 0.5


def outside_fraction(crop: np.ndarray, width: int, height: int) -> float:
    """Fraction of the crop window that lies outside the frame (filled by the border mode)."""
    cx, cy, s = crop
    x0, x1 = max(cx - s / 2, 0.0), min(cx + s / 2, float(width))
    y0, y1 = max(cy - s / 2, 0.0), min(cy + s / 2, float(height))
    inside = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return float(1.0 - inside / (s * s))


def warp_crop(frame: np.ndarray, crop: np.ndarray, resolution: int, border: str = "replicate") -> np.ndarray:
    """Resample the crop window of ``frame [H, W, C]`` to ``resolution²`` (area pre-filter when shrinking > 2×)."""
    cx, cy, size = (float(v) for v in crop)
    k = resolution / size
    h, w = frame.shape[:2]
    fx = fy = 1.0
    if k < 0.5:  # shrink with INTER_AREA first so the bilinear warp does not alias
        nw, nh = max(1, round(w * 2 * k)), max(1, round(h * 2 * k))
        frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / w, nh / h
    # continuous coords: X' = k (X − c) + R/2 with X = X_small / f; pixel index i = X − 0.5
    m = np.array(
        [
            [k / fx, 0.0, k / fx * 0.5 - k * cx + resolution / 2 - 0.5],
            [0.0, k / fy, k / fy * 0.5 - k * cy + resolution / 2 - 0.5],
        ]
    )
    return cv2.warpAffine(
        frame, m, (resolution, resolution), flags=cv2.INTER_LINEAR, borderMode=_BORDERS[border], borderValue=0
    )
