"""3D consistency across views, rigid pose, and locality of expressions."""

import torch
import torch.nn.functional as F

from models import cameras as cam
from models.genhead import params as P


def front(yaw=0.0, pitch=0.0, radius=cam.DEFAULT_RADIUS):
    return cam.orbit_label(torch.tensor([yaw]), torch.tensor([pitch]), radius)


RES = 64


def _unproject(out, label):
    o, d = cam.generate_rays(label, RES)
    return o + out.depth.reshape(1, -1, 1) * d  # [1, HW, 3]


def test_reprojection_between_views_agrees(gt, some_id):
    """Unproject view A with its depth, project into view B: visible pixels match B's render."""
    expr = P.expression_vector(1, smile=0.4, jaw_open=0.3)
    ca, cb = front(0.25, 0.05), front(-0.35, -0.1)
    a = gt.render(some_id, ca, RES, expression=expr)
    b = gt.render(some_id, cb, RES, expression=expr)
    pts = _unproject(a, ca)
    solid = a.alpha.reshape(-1) > 0.99
    uv, _ = cam.project(pts, cb)
    ob = cb[:, :16].reshape(4, 4)[:3, 3]
    dist_b = (pts[0] - ob).norm(dim=-1)
    g = (uv * 2 - 1).reshape(1, 1, -1, 2)  # grid_sample coords for align_corners=False

    def samp(img):
        return F.grid_sample(img, g, mode="bilinear", align_corners=False).reshape(img.shape[1], -1)

    depth_b, alpha_b, rgb_b = samp(b.depth)[0], samp(b.alpha)[0], samp(b.rgb)
    inside = (uv > 0.02).all(-1)[0] & (uv < 0.98).all(-1)[0]
    visible = solid & inside & (alpha_b > 0.99) & ((depth_b - dist_b).abs() < 0.01)
    assert visible.sum() > 0.3 * solid.sum()  # enough of the face is seen by both views
    err = (rgb_b - a.rgb.reshape(3, -1)).abs().mean(0)[visible]
    # tolerance: bilinear resampling of texture and shading edges at 64²; values in [−1, 1]
    assert err.median() < 0.03, err.median()
    assert err.quantile(0.9) < 0.12, err.quantile(0.9)
    # and the geometry agrees: B's depth predicts the unprojected points
    assert ((depth_b - dist_b).abs()[solid & inside & (alpha_b > 0.99)] < 0.01).float().mean() > 0.5


def test_pose_is_a_rigid_camera_change(gt, some_id):
    """Rendering with pose γ equals rendering pose 0 from the camera moved by the inverse head motion."""
    pose = torch.tensor([[0.35, 0.12, -0.08]])
    c = front(0.1, 0.05)
    posed = gt.render(some_id, c, RES, pose=pose)
    r = cam.rotation_yaw_pitch_roll(pose[:, 0], pose[:, 1], pose[:, 2])[0]
    pivot = torch.tensor(P.NECK_PIVOT)
    t = torch.eye(4)
    t[:3, :3] = r.T
    t[:3, 3] = pivot - r.T @ pivot  # world → head frame
    moved = cam.transform_label(c, t[None])
    neutral = gt.render(some_id, moved, RES)
    assert (posed.rgb - neutral.rgb).abs().mean() < 2e-3
    assert (posed.alpha - neutral.alpha).abs().max() < 0.05
    assert (posed.rgb - gt.render(some_id, c, RES).rgb).abs().mean() > 0.02  # the pose did something


def _changed(a, b, thr=0.08):
    return (a.rgb - b.rgb).abs().amax(1)[0] > thr  # [H, W]


def _region_mask(label, x_range, y_range, z=0.3):
    """Image mask of the world rectangle x_range × y_range at depth z, seen by a frontal camera."""
    corners = torch.tensor([[x, y, z] for x in x_range for y in y_range])
    uv, _ = cam.project(corners[None], label)
    u0, v0 = (uv[0].min(0).values * RES).floor().long().tolist()
    u1, v1 = (uv[0].max(0).values * RES).ceil().long().tolist()
    m = torch.zeros(RES, RES, dtype=torch.bool)
    m[max(v0, 0) : v1, max(u0, 0) : u1] = True
    return m


def test_jaw_open_changes_mostly_the_lower_face(gt, some_id):
    c = front()
    n = gt.render(some_id, c, RES)
    j = gt.render(some_id, c, RES, expression=P.expression_vector(1, jaw_open=1.0))
    ch = _changed(n, j)
    lower = _region_mask(c, (-0.35, 0.35), (-0.65, -0.08))
    assert ch.sum() > 30
    assert (ch & lower).sum() / ch.sum() > 0.9


def test_blink_changes_only_the_eye_region(gt, some_id):
    c = front()
    n = gt.render(some_id, c, RES)
    for name, sign in (("blink_left", 1), ("blink_right", -1)):
        bl = gt.render(some_id, c, RES, expression=P.expression_vector(1, **{name: 1.0}))
        ch = _changed(n, bl)
        eye = _region_mask(c, (0.0, sign * 0.25), (-0.04, 0.14))
        assert ch.sum() > 5, name
        assert (ch & eye).sum() / ch.sum() > 0.95, name


def test_expressions_are_local_and_gaze_moves_only_the_eyes(gt, some_id):
    c = front()
    n = gt.render(some_id, c, RES)
    brow = gt.render(some_id, c, RES, expression=P.expression_vector(1, brow_raise=1.0))
    ch = _changed(n, brow)
    upper = _region_mask(c, (-0.35, 0.35), (0.0, 0.45))
    assert ch.sum() > 5 and (ch & upper).sum() / ch.sum() > 0.9
    g = gt.render(some_id, c, RES, gaze=torch.tensor([0.35, 0.0]))
    ch = _changed(n, g)
    eyes = _region_mask(c, (-0.25, 0.25), (-0.04, 0.14))
    assert ch.sum() > 3 and (ch & eyes).sum() / ch.sum() > 0.95
