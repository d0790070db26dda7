"""Face analysis behind one interface: detection, named keypoints, foreground mask.

``make_face_analyzer(backend, ...)`` returns a ``FaceAnalyzer`` ('mediapipe' or 'face_alignment');
``make_segmenter()`` the foreground segmenter (mediapipe selfie segmentation). Backends that
cannot run raise ``FaceBackendUnavailable`` with the reason.
"""

from __future__ import annotations

from pipeline_tasks.face.base import Face, FaceAnalyzer, FaceBackendUnavailable, Segmenter, largest_face
from pipeline_tasks.face.canonical import ALIGN_POINTS, KEYPOINT_NAMES, PNP_POINTS

BACKENDS = ("mediapipe", "face_alignment")


def make_face_analyzer(backend: str = "mediapipe", **kw) -> FaceAnalyzer:
    """The configured face backend; ``kw`` are that backend's options."""
    if backend == "mediapipe":
        from pipeline_tasks.face.mediapipe_backend import MediapipeFaceAnalyzer

        return MediapipeFaceAnalyzer(**kw)
    if backend == "face_alignment":
        from pipeline_tasks.face.face_alignment_backend import FaceAlignmentAnalyzer

        return FaceAlignmentAnalyzer(**kw)
    raise FaceBackendUnavailable(f"unknown face backend {backend!r}; choose one of {BACKENDS}")


def make_segmenter(model_selection: int = 0) -> Segmenter:
    from pipeline_tasks.face.mediapipe_backend import MediapipeSegmenter

    return MediapipeSegmenter(model_selection)


__all__ = [
    "ALIGN_POINTS",
    "BACKENDS",
    "Face",
    "FaceAnalyzer",
    "FaceBackendUnavailable",
    "KEYPOINT_NAMES",
    "PNP_POINTS",
    "Segmenter",
    "largest_face",
    "make_face_analyzer",
    "make_segmenter",
]
