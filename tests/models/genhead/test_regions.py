"""The mouth and eye regions hold what the mouth and eye expressions change, at every camera."""

import torch

from models import cameras as cam
from models.genhead import params as P
from models.genhead.ground_truth import GroundTruth, identity_ids
from models.genhead.regions import region_masks


def test_expression_changes_fall_inside_their_regions():
    gt = GroundTruth()
    ids = identity_ids(11, 4)
    cams = cam.orbit_label(torch.tensor([-0.6, -0.2, 0.25, 0.6]), torch.tensor([0.1, -0.1, 0.0, 0.15]))
    masks = region_masks(cams, 48)
    assert set(masks) == {"mouth", "eyes"} and masks["mouth"].shape == (4, 1, 48, 48)
    assert 0.02 < masks["mouth"].mean() < 0.2 and (masks["mouth"] * masks["eyes"]).sum() == 0  # small, disjoint
    base = gt.render(ids, cams, 48).rgb

    def share_inside(name: str, region: str) -> float:
        e = P.expression_vector(4, **{name: 1.0})
        changed = ((gt.render(ids, cams, 48, expression=e).rgb - base).abs().amax(1, keepdim=True) / 2 > 0.1).float()
        return float((changed * masks[region]).sum() / changed.sum())

    for name in ("mouth_wide", "lip_pucker"):
        assert share_inside(name, "mouth") > 0.9, name
        assert share_inside(name, "eyes") < 0.05, name
    for name in ("blink_left", "blink_right", "brow_raise", "brow_furrow"):
        assert share_inside(name, "eyes") > 0.9, name
        assert share_inside(name, "mouth") < 0.05, name
    # the masks follow the camera: turning the head moves the mouth box sideways
    cx = lambda m: float((m[0, 0].sum(0) * torch.arange(48)).sum() / m[0, 0].sum())  # noqa: E731
    left, right = (
        region_masks(cam.orbit_label(torch.tensor([-0.5]), torch.zeros(1)), 48),
        region_masks(cam.orbit_label(torch.tensor([0.5]), torch.zeros(1)), 48),
    )
    assert abs(cx(left["mouth"]) - cx(right["mouth"])) > 4
