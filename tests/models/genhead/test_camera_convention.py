"""Head pose is the camera (DESIGN.md §2): rendering pose γ at a world camera equals rendering pose 0
at the head-relative camera T(γ)⁻¹·c. Every camera the synthetic world stores relies on this."""

import math

import torch

from models import cameras as cam
from models.genhead.ground_truth import GroundTruth, head_relative_cameras, head_to_world
from pipeline_tasks.eval.metrics import psnr


def test_pose_at_world_camera_equals_pose_zero_at_head_relative_camera():
    gt = GroundTruth()
    poses = torch.tensor([[0.3, -0.15, 0.1], [-0.35, 0.2, -0.12]])
    world = cam.orbit_label(torch.tensor([0.2, -0.4]), torch.tensor([0.1, -0.05]), torch.tensor([4.2, 3.8]))
    turned = gt.render([5, 6], world, 48, pose=poses)
    relative = gt.render([5, 6], head_relative_cameras(world, poses), 48)
    assert (psnr(turned.rgb, relative.rgb) > 60).all()
    assert (turned.alpha - relative.alpha).abs().max() < 1e-3
    inside = relative.alpha > 0.5
    assert (turned.depth - relative.depth)[inside].abs().max() < 1e-3
    # and the world camera without the pose is a different picture (the bug this convention removes)
    assert (psnr(turned.rgb, gt.render([5, 6], world, 48).rgb) < 30).all()


def test_head_relative_cameras_are_rigid_and_invert_the_pose():
    pose = torch.tensor([[0.25, -0.1, 0.05]])
    c = cam.orbit_label(torch.tensor([0.3]), torch.tensor([0.0]), torch.tensor([4.2]))
    rel = head_relative_cameras(c, pose)
    c2w, k = cam.from_label(rel)
    r = c2w[0, :3, :3]
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-5) and torch.allclose(k, cam.from_label(c)[1])
    back = cam.transform_label(rel, head_to_world(pose))
    assert torch.allclose(back, c, atol=1e-5)

    # a pure yaw of the head by δ is a camera orbit by −δ about the neck pivot's vertical axis
    def angle(label):
        return math.atan2(float(cam.from_label(label)[0][0, 0, 3]), float(cam.from_label(label)[0][0, 2, 3]) + 0.05)

    yaw_only = head_relative_cameras(c, torch.tensor([[0.2, 0.0, 0.0]]))
    assert math.isclose(angle(yaw_only), angle(c) - 0.2, abs_tol=1e-4)
    # [B, V, 25] cameras take one pose per leading entry
    many = head_relative_cameras(torch.stack([c, c], 1), pose)
    assert many.shape == (1, 2, 25) and torch.allclose(many[:, 0], rel, atol=1e-6)
