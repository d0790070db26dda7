"""One interface for face analysis, whatever the backend (mediapipe, face-alignment).

Why: ingestion (crop, camera, flags) only needs a face box, a confidence and the named keypoints
of ``canonical.KEYPOINT_NAMES``; each backend maps its own landmark indices to those names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline_tasks.face.canonical import KEYPOINT_NAMES


class FaceBackendUnavailable(RuntimeError):
    """A face backend cannot run here (missing package or weights); the message says what to do."""


@dataclass
class Face:
    """One face in one frame. Coordinates are continuous pixels (pixel i spans [i, i+1))."""

    bbox: np.ndarray  # [4] x0, y0, x1, y1
    score: float  # detection confidence in [0, 1]
    keypoints: np.ndarray  # [len(KEYPOINT_NAMES), 2], ordered as KEYPOINT_NAMES
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # backend's raw 2D landmarks

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))

    def points(self, names: tuple[str, ...]) -> np.ndarray:
        idx = [KEYPOINT_NAMES.index(n) for n in names]
        return self.keypoints[idx]


class FaceAnalyzer(Protocol):
    """Per-video face analyser. ``reset()`` between videos (trackers keep state)."""

    name: str

    def faces(self, frame: np.ndarray) -> list[Face]:
        """All faces of an RGB uint8 frame ``[H, W, 3]`` (any order)."""

    def reset(self) -> None: ...

    def close(self) -> None: ...


class Segmenter(Protocol):
    def mask(self, frame: np.ndarray) -> np.ndarray:
        """Foreground probability ``[H, W]`` float32 in [0, 1] of an RGB uint8 frame."""

    def close(self) -> None: ...


def largest_face(faces: list[Face]) -> Face | None:
    """The face the pipeline tracks when several appear: the largest box."""
    return max(faces, key=lambda f: f.area) if faces else None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
