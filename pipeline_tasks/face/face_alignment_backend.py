"""face-alignment backend (FAN 68-point 2D/3D landmarks), only when its weights are already local.

face-alignment downloads every model on first use; our machines have no internet, so the weight
files are checked in ``torch.hub.get_dir()/checkpoints`` *before* constructing anything, and a
missing file gives a message naming it and where to put it. Never downloads.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

import models  # noqa: F401  (installs the CPU torchvision shim before face_alignment imports torchvision)
from pipeline_tasks.face.base import Face, FaceBackendUnavailable
from pipeline_tasks.face.canonical import KEYPOINT_NAMES

# 68-point (iBUG 300-W) indices; a tuple means the mean of those points. "right" = subject's right.
LM68_INDEX: dict[str, int | tuple[int, ...]] = {
    "right_eye": (36, 37, 38, 39, 40, 41),
    "left_eye": (42, 43, 44, 45, 46, 47),
    "right_eye_outer": 36,
    "right_eye_inner": 39,
    "left_eye_inner": 42,
    "left_eye_outer": 45,
    "nose_bridge": 27,
    "nose_tip": 30,
    "subnasale": 33,
    "mouth_right": 48,
    "mouth_left": 54,
    "chin": 8,
}
assert set(LM68_INDEX) == set(KEYPOINT_NAMES)


def keypoints_from_68(lm: np.ndarray) -> np.ndarray:
    """Named keypoints ``[len(KEYPOINT_NAMES), 2]`` from 68 landmarks ``[68, ≥2]``."""
    out = []
    for n in KEYPOINT_NAMES:
        idx = LM68_INDEX[n]
        out.append(lm[list(idx), :2].mean(0) if isinstance(idx, tuple) else lm[idx, :2])
    return np.asarray(out, dtype=np.float64)


def required_weight_files(landmarks: str = "2d", detector: str = "sfd") -> list[str]:
    """File names face-alignment would download for this configuration (from its own URL tables)."""
    import face_alignment.api as fa_api

    names = [fa_api.models_urls["2DFAN-4" if landmarks == "2d" else "3DFAN-4"]]
    if landmarks == "3d":
        names.append(fa_api.models_urls["depth"])
    if detector == "sfd":
        from face_alignment.detection.sfd import sfd_detector

        names.append(sfd_detector.models_urls["s3fd"])
    elif detector == "blazeface":
        from face_alignment.detection.blazeface import blazeface_detector as bd

        names += [bd.models_urls["blazeface_weights"], bd.models_urls["blazeface_anchors"]]
    else:
        raise FaceBackendUnavailable(
            f"face backend 'face_alignment': detector {detector!r} not supported here (use 'sfd' or 'blazeface')"
        )
    return [os.path.basename(urlparse(u).path) for u in names]


def missing_weight_files(landmarks: str = "2d", detector: str = "sfd") -> list[Path]:
    import torch

    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    return [ckpt / n for n in required_weight_files(landmarks, detector) if not (ckpt / n).is_file()]


class FaceAlignmentAnalyzer:
    """Faces from face-alignment's detector + FAN; the detector score is the face confidence."""

    name = "face_alignment"

    def __init__(self, landmarks: str = "2d", detector: str = "sfd", device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import face_alignment
        except ImportError as e:
            raise FaceBackendUnavailable(f"face backend 'face_alignment': package not importable ({e})") from e
        missing = missing_weight_files(landmarks, detector)
        if missing:
            raise FaceBackendUnavailable(
                "face backend 'face_alignment': weights not found locally (this project never downloads): "
                + ", ".join(str(p) for p in missing)
                + ". Copy them there (torch.hub.get_dir()/checkpoints) or use backend 'mediapipe'."
            )
        lt = face_alignment.LandmarksType.TWO_D if landmarks == "2d" else face_alignment.LandmarksType.THREE_D
        self._fa = face_alignment.FaceAlignment(
            lt, device=device, face_detector=detector, compile=False, flip_input=False
        )

    def faces(self, frame: np.ndarray) -> list[Face]:
        lms, scores, boxes = self._fa.get_landmarks_from_image(frame, return_bboxes=True, return_landmark_score=True)
        if not lms:
            return []
        out = []
        for lm, box in zip(lms, boxes):
            lm = np.asarray(lm, dtype=np.float64)
            out.append(
                Face(
                    bbox=np.asarray(box[:4], dtype=np.float64),
                    score=float(box[4]) if len(box) > 4 else 1.0,
                    keypoints=keypoints_from_68(lm),
                    landmarks=lm[:, :2],
                )
            )
        return out

    def reset(self) -> None:  # stateless per frame
        pass

    def close(self) -> None:
        pass
