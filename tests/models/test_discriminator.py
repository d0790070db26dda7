"""Dual discriminator: conditioning, gradients, lazy R1."""

import pytest
import torch

from models import cameras as cams
from models.config import DiscriminatorConfig
from models.discriminator import DualDiscriminator, lazy_r1_loss, r1_penalty


def _d(**kw):
    return DualDiscriminator(DiscriminatorConfig(channels=8, max_channels=16, cmap_dim=16, **kw), image_resolution=32)


def test_discriminator_shapes_and_camera_conditioning():
    d = _d()
    img, raw = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 16, 16)
    c1 = cams.sample_cameras(4, torch.Generator().manual_seed(0))[0]
    c2 = cams.sample_cameras(4, torch.Generator().manual_seed(1))[0]
    out = d(img, raw, c1)
    assert out.shape == (4, 1)
    assert not torch.allclose(out, d(img, raw, c2))  # the camera matters
    assert not torch.allclose(out, d(img, torch.randn_like(raw), c1))  # the raw image matters
    assert d(img[:3], raw[:3], c1[:3]).shape == (3, 1)  # batch not divisible by the mbstd group
    with pytest.raises(ValueError, match="32"):
        d(torch.randn(1, 3, 64, 64), raw[:1], c1[:1])


def test_lazy_r1():
    d = _d(r1_gamma=2.0, r1_every=4)
    img, raw = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16)
    c = cams.sample_cameras(2)[0]
    assert lazy_r1_loss(d, img, raw, c, step=3).item() == 0.0
    pen = r1_penalty(d, img, raw, c)
    assert pen.shape == (2,) and (pen > 0).all()
    loss = lazy_r1_loss(d, img, raw, c, step=8)
    assert torch.allclose(loss, pen.mean() * 2.0 / 2 * 4)
    loss.backward()
    assert d.from_rgb.weight.grad is not None and d.from_rgb.weight.grad.abs().sum() > 0
