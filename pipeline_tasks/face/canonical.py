"""The canonical face: one place for the 3D template, its world scale and the crop framing.

Why one place: the crop (where eyes and mouth land in an aligned frame) and the camera
estimate (PnP against a 3D face) must agree, or an aligned frontal face would not get the
frontal camera. So the 2D framing is *derived*: the canonical crop positions are the projection
of the 3D template through the project's frontal camera (radius 4.2, FOV 12°, models/cameras.py).

The wheel of mediapipe 0.10.21 ships no ``canonical_face_model.obj`` nor geometry-pipeline
metadata (``mediapipe/modules/face_geometry/data/`` holds only ``__init__.py``), so the template is
our own mean face: anthropometric adult means (inter-pupillary 63 mm, bi-ocular 88 mm,
inter-canthal 32 mm, mouth width 50 mm, eye line to stomion 72 mm, stomion to menton 48 mm,
nose protrusion ~30 mm), in millimetres, in the head-centred world frame of DESIGN.md §6
(x towards the subject's left = image right for a frontal camera, y up, z out of the face).

World scale and eye height: fitted so that the 5 alignment points of this template, seen by the
frontal camera, land where those of the procedural GenHead head (models/genhead/procedural.py, mean
identity: eyes (±0.115, 0.045, ~0.33), nose tip (0, −0.075, 0.405), mouth corners (±0.078, −0.178,
~0.31)) land: least squares over (units per mm, eye height) gives 0.00327 and 15.7 mm, residual
3.1 px RMS at 256² (the procedural eyes are set wider than a human's; rounded to 0.0033 and 16 mm
below); the frontal framing before the fit (FLAME ×3 = 0.003, 8 mm) was 7.1 px off. The result is
close to FFHQ: eyes at ≈ (0.374, 0.436) and (0.626, 0.436), mouth corners at ≈ 0.723 of the
height, inter-ocular ≈ 0.25 of the width (FFHQ ≈ 0.25); FFHQ's rule (side 2·max(2·eye-eye,
1.8·eye-mouth), centre 0.1·eye-mouth below the eyes) would give a crop 3 % larger, centred 3.5 %
higher. The head (vertex to chin ≈ 0.8 units) stays inside the head box [−0.65, 0.65]³.
If the synthetic head's proportions change, refit ``WORLD_UNITS_PER_MM`` / ``EYE_HEIGHT_MM`` here.
"""

from __future__ import annotations

import numpy as np

from models.cameras import DEFAULT_RADIUS, FOCAL_NORMALISED

WORLD_UNITS_PER_MM = 0.0033  # ≈ FLAME ×3 (the published 3 units per metre), fitted to the procedural head
EYE_HEIGHT_MM = 16.0  # eye line above the head centre (fitted, see above)

# Named points, mm, eye line at y = 0 (shifted by EYE_HEIGHT_MM below). Subject's right = −x.
_TEMPLATE_MM: dict[str, tuple[float, float, float]] = {
    "right_eye": (-31.5, 0.0, 82.0),  # pupil centres
    "left_eye": (31.5, 0.0, 82.0),
    "right_eye_outer": (-44.0, -1.0, 66.0),
    "right_eye_inner": (-16.0, 0.0, 76.0),
    "left_eye_inner": (16.0, 0.0, 76.0),
    "left_eye_outer": (44.0, -1.0, 66.0),
    "nose_bridge": (0.0, 2.0, 88.0),
    "nose_tip": (0.0, -40.0, 110.0),
    "subnasale": (0.0, -52.0, 96.0),
    "mouth_right": (-25.0, -72.0, 80.0),
    "mouth_left": (25.0, -72.0, 80.0),
    "chin": (0.0, -120.0, 82.0),
}

#: The 5 alignment points, as in the published pipeline (eyes, nose tip, mouth corners).
ALIGN_POINTS: tuple[str, ...] = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
#: Points used for PnP: rigid-ish ones (eye corners, nose) plus mouth corners and chin.
PNP_POINTS: tuple[str, ...] = (
    "right_eye_outer",
    "right_eye_inner",
    "left_eye_inner",
    "left_eye_outer",
    "nose_bridge",
    "nose_tip",
    "subnasale",
    "mouth_right",
    "mouth_left",
    "chin",
)
#: Every name a face backend must provide.
KEYPOINT_NAMES: tuple[str, ...] = tuple(_TEMPLATE_MM)


def template_world(names: tuple[str, ...] = KEYPOINT_NAMES) -> np.ndarray:
    """3D template points ``[N, 3]`` in world units (head-centred world of DESIGN.md §6)."""
    p = np.array([_TEMPLATE_MM[n] for n in names], dtype=np.float64)
    p[:, 1] += EYE_HEIGHT_MM
    return p * WORLD_UNITS_PER_MM


def frontal_world2cam(radius: float = DEFAULT_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) of the frontal camera (on +z looking at the origin, OpenCV axes): x_cam = R x + t."""
    return np.diag([1.0, -1.0, -1.0]), np.array([0.0, 0.0, radius])


def project_normalised(points: np.ndarray, rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Project world points ``[N,3]`` to normalised image coords (u, v) with the project's K."""
    cam = points @ rot.T + trans
    return cam[:, :2] / cam[:, 2:3] * FOCAL_NORMALISED + 0.5


def canonical_crop_points(names: tuple[str, ...] = ALIGN_POINTS) -> np.ndarray:
    """Canonical positions ``[N, 2]`` of ``names`` in an aligned crop, normalised to [0, 1]."""
    r, t = frontal_world2cam()
    return project_normalised(template_world(names), r, t)
