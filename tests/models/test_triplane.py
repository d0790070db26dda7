"""Tri-plane lookup and multi-view rendering of one tri-plane."""

import pytest
import torch

from models import cameras as cams
from models.config import RenderConfig
from models.rendering.triplane import TriplaneRenderer, sample_triplane

BOX = 0.65


def coordinate_planes(res: int) -> torch.Tensor:
    """Planes whose 2 channels hold the world coordinates of their two axes at each texel centre."""
    c = ((torch.arange(res) + 0.5) / res * 2 - 1) * BOX  # texel centres, align_corners=False
    rows, cols = torch.meshgrid(c, c, indexing="ij")  # grid y = row = 2nd axis, grid x = column = 1st axis
    plane = torch.stack([cols, rows])  # ch0 = first named axis, ch1 = second
    return plane.expand(3, 2, res, res)[None].clone()  # (x,y), (y,z), (z,x) all store (first, second)


def test_triplane_returns_coordinates_at_random_points():
    res = 16
    planes = coordinate_planes(res).repeat(2, 1, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    inner = BOX * (1 - 1 / res)  # bilinear is exact for a linear function inside the outer texel centres
    pts = (torch.rand(2, 200, 3, generator=g) * 2 - 1) * inner
    f = sample_triplane(planes, pts, BOX)  # [B,3,M,2]
    x, y, z = pts.unbind(-1)
    expected = torch.stack([torch.stack([x, y], -1), torch.stack([y, z], -1), torch.stack([z, x], -1)], 1)
    assert f.shape == (2, 3, 200, 2)
    assert torch.allclose(f, expected, atol=1e-5)


def test_triplane_zero_outside_box():
    planes = torch.ones(1, 3, 4, 8, 8)
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 2 * BOX], [3 * BOX, 3 * BOX, 3 * BOX]]])
    f = sample_triplane(planes, pts, BOX)
    assert torch.allclose(f[0, :, 0], torch.ones(3, 4))
    assert f[0, :, 2].abs().max() == 0  # outside every plane
    assert (
        torch.allclose(f[0, 0, 1], torch.ones(4)) and f[0, 1, 1].abs().max() == 0
    )  # z out of range: (y,z), (z,x) are zero


def test_multi_view_render_matches_single_views():
    cfg = RenderConfig(neural_resolution=8, n_coarse=6, n_fine=6, feature_channels=5, decoder_hidden=8)
    r = TriplaneRenderer(cfg, triplane_channels=4).eval()
    torch.nn.init.normal_(r.decoder.sigma.weight)  # give it some density
    planes = torch.randn(2, 3, 4, 16, 16)
    labels = cams.sample_cameras(6, torch.Generator().manual_seed(1))[0].reshape(2, 3, 25)
    multi = r(planes, labels, perturb=False)
    assert multi["features"].shape == (6, 5, 8, 8) and multi["depth"].shape == (6, 1, 8, 8)
    for b in range(2):
        for k in range(3):
            single = r(planes[b : b + 1], labels[b : b + 1, k], perturb=False)
            for key in ("features", "alpha", "depth"):
                assert torch.allclose(multi[key][b * 3 + k], single[key][0], atol=1e-5), key
    with pytest.raises(ValueError, match="batch"):
        r(planes, labels[:1])


def test_the_renderers_mean_feature_is_the_mean_of_the_three_lookups_bit_for_bit_and_contiguous():
    from models.rendering.triplane import mean_triplane_features

    g = torch.Generator().manual_seed(3)
    planes = torch.randn(2, 3, 5, 8, 8, generator=g)
    pts = (torch.rand(2, 100, 3, generator=g) * 2 - 1) * BOX * 1.1  # some points outside the box (zero features)
    got = mean_triplane_features(planes, pts, BOX)
    assert got.is_contiguous() and got.shape == (2, 100, 5)
    assert torch.equal(got, sample_triplane(planes, pts, BOX).mean(1))


@pytest.mark.parametrize("bf16", [False, True])
def test_fused_decoder_equals_the_layers_values_and_gradients(bf16):
    """OSGDecoder's one-node MLP (hand-written backward) against the same parameters run as plain layers by autograd:
    equal outputs and equal gradients of the input and of every parameter (under CPU bf16 autocast: to bf16
    rounding), the parameters' grads in fp32."""
    from models.rendering.triplane import OSGDecoder

    torch.manual_seed(0)
    dec = OSGDecoder(6, hidden=16, out_channels=5)
    torch.nn.init.normal_(dec.sigma.weight)
    torch.nn.init.normal_(dec.sigma.bias)
    x0 = torch.randn(2, 300, 6) * 3  # some pre-activations past softplus's linear threshold too
    weights = torch.linspace(-1, 1, 5)

    def grads(fn):
        dec.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            sigma, feat = fn(x)
        assert sigma.shape == (2, 300, 1) and feat.shape == (2, 300, 5)
        (sigma.float().square().sum() + (feat.float() * weights).sum()).backward()
        return [sigma.float(), feat.float(), x.grad] + [p.grad for p in dec.parameters()]

    fused, ref = grads(dec), grads(dec.reference)
    tol = 2e-2 if bf16 else 1e-5
    for a, b in zip(fused, ref):
        assert a.dtype == b.dtype
        assert (a - b).abs().max() <= tol * (1 + b.abs().max()), (a - b).abs().max()
    assert all(p.grad.dtype == torch.float32 for p in dec.parameters())
    assert fused[1].min() >= -0.001 and fused[1].max() <= 1.001  # sigmoid·1.002 − 0.001


def test_cpu_inference_renders_in_chunks_with_the_same_images(monkeypatch):
    """Deterministic CPU inference renders a few tri-planes per call (``CPU_CHUNK_SAMPLES``): the same images as one
    call over the whole batch, in the same order."""
    import models.rendering.triplane as tp

    cfg = RenderConfig(neural_resolution=8, n_coarse=6, n_fine=6, feature_channels=5, decoder_hidden=8)
    r = TriplaneRenderer(cfg, triplane_channels=4).eval()
    torch.nn.init.normal_(r.decoder.sigma.weight)
    planes = torch.randn(5, 3, 4, 16, 16)
    labels = cams.sample_cameras(10, torch.Generator().manual_seed(2))[0].reshape(5, 2, 25)
    whole = r(planes, labels, perturb=False)  # grad enabled: one call
    calls, render_rays = [], tp.render_rays
    monkeypatch.setattr(tp, "render_rays", lambda *a, **k: calls.append(a[1].shape[0]) or render_rays(*a, **k))
    monkeypatch.setattr(tp, "CPU_CHUNK_SAMPLES", 2 * 2 * 8 * 8 * 12)  # two tri-planes (2 views each) per call
    with torch.no_grad():
        chunked = r(planes, labels, perturb=False)
    assert calls == [2, 2, 1]
    for key in ("features", "alpha", "transmittance", "depth"):
        assert chunked[key].shape == whole[key].shape
        assert torch.allclose(chunked[key], whole[key].detach(), atol=1e-6), key
