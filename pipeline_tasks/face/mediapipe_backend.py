"""mediapipe backend (0.10.21, models inside the wheel): face detection, 478-point mesh, selfie segmentation.

The face mesh runs in tracking mode (detection only when the track is lost), which is both faster
and steadier on video; the short/full-range face detector runs on every frame only to give each
mesh face a confidence (the legacy mesh API exposes none).
"""

from __future__ import annotations

import numpy as np

from pipeline_tasks.face.base import Face, FaceBackendUnavailable, iou
from pipeline_tasks.face.canonical import KEYPOINT_NAMES

# 478-point mesh indices (refine_landmarks=True adds the irises 468–477). "right" = subject's right.
MESH_INDEX: dict[str, int | tuple[int, ...]] = {
    "right_eye": 468,  # iris centre
    "left_eye": 473,
    "right_eye_outer": 33,
    "right_eye_inner": 133,
    "left_eye_inner": 362,
    "left_eye_outer": 263,
    "nose_bridge": 168,
    "nose_tip": 1,
    "subnasale": 2,
    "mouth_right": 61,
    "mouth_left": 291,
    "chin": 152,
}
assert set(MESH_INDEX) == set(KEYPOINT_NAMES)
_KP_IDX = np.array([MESH_INDEX[n] for n in KEYPOINT_NAMES])


def _solutions():
    try:
        import mediapipe as mp

        return mp.solutions
    except (ImportError, AttributeError) as e:  # ≥ 0.10.30 dropped the legacy solutions
        raise FaceBackendUnavailable(
            f"face backend 'mediapipe' needs mediapipe 0.10.21 (legacy mediapipe.solutions with bundled models): {e}"
        ) from e


class MediapipeFaceAnalyzer:
    """Faces from the 478-point face mesh, each scored by the face detector (IoU match)."""

    name = "mediapipe"

    def __init__(
        self,
        max_faces: int = 4,
        detector_range: str = "full",
        min_detection_confidence: float = 0.3,
        min_tracking_confidence: float = 0.5,
    ):
        self._sol = _solutions()
        self._kw = dict(
            max_faces=max_faces,
            detector_range=detector_range,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self._mesh = None
        self._det = None
        self.reset()

    def reset(self) -> None:
        self.close()
        kw = self._kw
        self._mesh = self._sol.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=kw["max_faces"],
            refine_landmarks=True,
            min_detection_confidence=kw["min_detection_confidence"],
            min_tracking_confidence=kw["min_tracking_confidence"],
        )
        self._det = self._sol.face_detection.FaceDetection(
            model_selection=1 if kw["detector_range"] == "full" else 0,
            min_detection_confidence=kw["min_detection_confidence"],
        )

    def faces(self, frame: np.ndarray) -> list[Face]:
        h, w = frame.shape[:2]
        frame = np.ascontiguousarray(frame)
        mesh = self._mesh.process(frame)
        if not mesh.multi_face_landmarks:
            return []
        dets = self._det.process(frame).detections or []
        boxes = []
        for d in dets:
            b = d.location_data.relative_bounding_box
            boxes.append(
                (np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h]), float(d.score[0]))
            )
        out = []
        for fl in mesh.multi_face_landmarks:
            lm = np.array([(p.x * w, p.y * h) for p in fl.landmark], dtype=np.float64)
            bbox = np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()])
            score = max((s for b, s in boxes if iou(b, bbox) > 0.3), default=0.0)
            out.append(Face(bbox=bbox, score=score, keypoints=lm[_KP_IDX], landmarks=lm))
        return out

    def close(self) -> None:
        for m in (self._mesh, self._det):
            if m is not None:
                m.close()
        self._mesh = self._det = None


class MediapipeSegmenter:
    """Foreground (person) mask from mediapipe selfie segmentation (model 0: square 256² input)."""

    def __init__(self, model_selection: int = 0):
        self._seg = _solutions().selfie_segmentation.SelfieSegmentation(model_selection=model_selection)

    def mask(self, frame: np.ndarray) -> np.ndarray:
        m = self._seg.process(np.ascontiguousarray(frame)).segmentation_mask
        return np.clip(np.asarray(m, dtype=np.float32), 0.0, 1.0)

    def close(self) -> None:
        self._seg.close()
