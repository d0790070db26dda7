"""FLOP counts (models/flops.py) behave like the arithmetic they count."""

from __future__ import annotations

import pytest
import torch

from models.config import RenderConfig
from models.flops import converted_frame_flops, counted_flops, psi_step, renderer_uncounted_flops
from models.param_counts import preset_config


def test_a_linear_layer_counts_two_flops_per_multiply_add_and_its_backward_twice_more():
    lin = torch.nn.Linear(32, 16)
    x = torch.randn(8, 32, requires_grad=True)
    assert counted_flops(lambda: lin(x)) == 2 * 8 * 32 * 16
    assert counted_flops(lambda: lin(x).sum().backward()) == 3 * 2 * 8 * 32 * 16


def test_the_renderer_part_grows_with_rays_samples_and_the_backward():
    r = RenderConfig(n_coarse=16, n_fine=16)
    one = renderer_uncounted_flops(r, 16, 1000, backward=False)
    assert renderer_uncounted_flops(r, 16, 2000, backward=False) == 2 * one
    assert renderer_uncounted_flops(r, 16, 1000, backward=True) == 3 * one
    assert renderer_uncounted_flops(RenderConfig(n_coarse=32, n_fine=32), 16, 1000, backward=False) > 1.9 * one


def test_a_converted_frame_costs_the_same_for_each_more_view():
    cfg = preset_config("tiny")
    f2, f3, f4 = (converted_frame_flops(cfg, k)["total"] for k in (2, 3, 4))
    assert f4 - f3 == f3 - f2 > 0


def test_a_training_step_counts_its_backward():
    """Forward + backward of Ψ3d costs 2–3.5× the forward alone (weight and input gradients of each layer; the
    attention backward counts 2.5× its forward; the input image needs no gradient): measured 3.37× at tiny."""
    from models import cameras as cams
    from models.psi import build_psi

    cfg = preset_config("tiny")
    step = counted_flops(psi_step(cfg, 2, static=True))
    psi = build_psi(cfg, static=True)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    c = cams.sample_cameras(2, torch.Generator().manual_seed(0))[0]
    with torch.no_grad():
        fwd = counted_flops(lambda: psi.render(psi(x), c))
    assert 2.0 * fwd < step < 3.5 * fwd, (step, fwd)
    assert step == pytest.approx(counted_flops(psi_step(cfg, 4, static=True)) / 2, rel=1e-6)  # linear in the batch
