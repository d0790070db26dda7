"""The loss terms of pipeline_tasks/training/objective.py on constructed renders."""

import pytest
import torch

from models import cameras as cam
from models.config import LossConfig, ModelConfig
from models.genhead.regions import region_masks
from pipeline_tasks.training.objective import PsiObjective

OFFICIAL_TERMS = ("l1", "lpips", "raw_l1", "raw_lpips", "foreground_l1", "foreground_lpips", "background_l1", "alpha")


def _objective(**weights: float) -> PsiObjective:
    terms = {k: {"weight": 0.0} for k in OFFICIAL_TERMS} | {k: {"weight": w} for k, w in weights.items()}
    return PsiObjective(ModelConfig(), LossConfig(lpips_net="alex", **terms))


def test_region_l1_sees_only_the_mouth_and_eyes():
    """An error outside the projected mouth and eye boxes costs nothing; inside, the term is the mean absolute
    error over the boxes' pixels (so a small region is not drowned by the whole image), per real target."""
    res, g = 64, torch.Generator().manual_seed(0)
    cams = cam.orbit_label(torch.tensor([-0.4, 0.0, 0.3]), torch.tensor([0.0, 0.1, -0.1]))
    target = torch.rand(3, 3, res, res, generator=g) * 2 - 1
    masks = region_masks(cams, res)
    inside = torch.maximum(masks["mouth"], masks["eyes"]).expand(-1, 3, -1, -1) > 0.5
    assert inside.any() and (~inside).any()
    out = {"image": target.clone(), "image_raw": target[..., ::2, ::2].clone()}
    real = torch.ones(3, dtype=torch.bool)
    obj = _objective(region_l1=2.0)

    out["image"] = torch.where(inside, target, -target)  # wrong everywhere but the regions
    total, log = obj.generator_loss(out, target, None, cams, real, step=0)
    assert float(total) == 0.0 and log["region_l1"] == 0.0

    err = torch.where(inside, torch.full_like(target, 0.25), torch.zeros_like(target))
    out["image"] = target + err
    total, log = obj.generator_loss(out, target, None, cams, real, step=0)
    assert log["region_l1"] == pytest.approx(0.25, rel=1e-5) and float(total) == pytest.approx(0.5, rel=1e-5)
    # a pseudo target (no camera-true region there) and a weight of 0 leave it out
    assert "region_l1" not in obj.generator_loss(out, target, None, cams, ~real, step=0)[1]
    assert "region_l1" not in _objective().generator_loss(out, target, None, cams, real, step=0)[1]


def test_region_l1_reaches_the_render_only_through_the_regions():
    res = 32
    cams = cam.orbit_label(torch.zeros(2), torch.zeros(2))
    target = torch.zeros(2, 3, res, res)
    image = torch.full((2, 3, res, res), 0.1, requires_grad=True)  # |x| has no slope at 0
    total, _ = _objective(region_l1=1.0).generator_loss(
        {"image": image, "image_raw": image[..., ::2, ::2]}, target, None, cams, torch.ones(2, dtype=torch.bool), 0
    )
    total.backward()
    masks = region_masks(cams, res)
    region = torch.maximum(masks["mouth"], masks["eyes"]).expand(-1, 3, -1, -1) > 0.5
    assert (image.grad[~region] == 0).all() and (image.grad[region].abs() > 0).all()
