"""Camera estimation: PnP of aligned-crop keypoints against the canonical face → the project's 25-vector.

The head is fixed at the origin (DESIGN.md §6) and the camera moves: solvePnP gives the head's
world→camera transform (R, t) in OpenCV axes; cam2world is its inverse. The rotation is smoothed
as the head's rotation relative to the frontal camera (a small rotation vector), never as R itself
(R's rotation vector sits at angle π for the frontal camera, where it is discontinuous).
"""

from __future__ import annotations

import cv2
import numpy as np

from models.cameras import FOCAL_NORMALISED
from pipeline_tasks.face.canonical import PNP_POINTS, frontal_world2cam, project_normalised, template_world

_VIRTUAL_RES = 512.0  # PnP runs in pixels of a virtual 512² crop (well-conditioned numbers)
_K_PX = np.array(
    [
        [FOCAL_NORMALISED * _VIRTUAL_RES, 0, _VIRTUAL_RES / 2],
        [0, FOCAL_NORMALISED * _VIRTUAL_RES, _VIRTUAL_RES / 2],
        [0, 0, 1],
    ]
)
_K_NORM = np.array([[FOCAL_NORMALISED, 0, 0.5], [0, FOCAL_NORMALISED, 0.5], [0, 0, 1]])
_R_FRONT, _ = frontal_world2cam()


def solve_head_pose(crop_points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(head rotation vector relative to frontal ``[3]``, world→camera translation ``[3]``) or None.

    ``crop_points [len(PNP_POINTS), 2]`` are crop-normalised coords of PNP_POINTS.
    """
    obj = template_world(PNP_POINTS)
    img = np.ascontiguousarray(np.asarray(crop_points, dtype=np.float64) * _VIRTUAL_RES)
    # SQPnP: globally optimal, no initial guess, ~0.1 ms (iterative LM from the frontal pose took ~15 ms)
    ok, rvec, tvec = cv2.solvePnP(obj, img, _K_PX, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok or not np.all(np.isfinite(rvec)) or tvec[2, 0] <= 0:
        return None
    r = cv2.Rodrigues(rvec)[0]
    r_head = _R_FRONT.T @ r
    return cv2.Rodrigues(r_head)[0].ravel(), tvec.ravel()


def world2cam_from_pose(rvec_head: np.ndarray, tvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _R_FRONT @ cv2.Rodrigues(np.asarray(rvec_head, dtype=np.float64).reshape(3, 1))[0], np.asarray(
        tvec, dtype=np.float64
    )


def pose_to_label(rvec_head: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """The 25-vector (cam2world row-major, normalised K) of one head pose."""
    r, t = world2cam_from_pose(rvec_head, tvec)
    c2w = np.eye(4)
    c2w[:3, :3] = r.T
    c2w[:3, 3] = -r.T @ t
    return np.concatenate([c2w.reshape(16), _K_NORM.reshape(9)]).astype(np.float32)


def reprojection_error(label: np.ndarray, crop_points: np.ndarray) -> float:
    """Mean distance (crop-normalised units) between the template projected by ``label`` and ``crop_points``."""
    c2w = np.asarray(label[:16], dtype=np.float64).reshape(4, 4)
    r = c2w[:3, :3].T
    t = -r @ c2w[:3, 3]
    uv = project_normalised(template_world(PNP_POINTS), r, t)
    return float(np.linalg.norm(uv - crop_points, axis=-1).mean())


def head_pose_angles(cameras: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll (degrees) ``[T, 3]`` of the head as seen by each camera ``[T, 25]``.

    The head rotation R_head (world→camera = R_front · R_head) decomposed as
    ``models.cameras.rotation_yaw_pitch_roll``: R_y(yaw)·R_x(pitch)·R_z(roll). Positive roll turns
    the face counter-clockwise in the image (the head's +x towards +y).
    """
    cams = np.asarray(cameras, dtype=np.float64).reshape(-1, 25)
    out = np.empty((len(cams), 3))
    for i, c in enumerate(cams):
        r = c[:16].reshape(4, 4)[:3, :3].T  # world→camera rotation
        h = _R_FRONT.T @ r
        yaw = np.arctan2(h[0, 2], h[2, 2])
        pitch = np.arcsin(np.clip(-h[1, 2], -1, 1))
        roll = np.arctan2(h[1, 0], h[1, 1])
        out[i] = np.degrees([yaw, pitch, roll])
    return out
