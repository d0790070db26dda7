"""Generic volume renderer: a solid sphere seen from a camera, importance sampling, helpers."""

import math

import pytest
import torch

from models import cameras as cams
from models.rendering.volume import composite, importance_samples, render_rays, stratified_samples, to_image

RADIUS = 0.3
DISTANCE = 4.2
RES = 33  # odd: the centre pixel's ray goes through the sphere centre


def sphere_field(radius=RADIUS, density=1e3):
    def fn(points, directions):
        inside = (points.norm(dim=-1, keepdim=True) < radius).to(points.dtype)
        return inside * density, torch.cat([inside, points], -1)  # features: occupancy, xyz

    return fn


def true_hit(origins, dirs, radius=RADIUS):
    """Ray-sphere (centred at the origin) first-hit distance and closest-approach distance."""
    tca = -(origins * dirs).sum(-1)
    d2 = (origins * origins).sum(-1) - tca**2
    thc = (radius**2 - d2).clamp_min(0).sqrt()
    return tca - thc, d2.clamp_min(0).sqrt()


def _render(n_coarse, n_fine, seed=0, feature_mix="mean"):
    label = cams.orbit_label(torch.tensor([0.3]), torch.tensor([-0.1]), DISTANCE)
    o, d = cams.generate_rays(label, RES)
    near, far = cams.ray_bounds(label)
    g = torch.Generator().manual_seed(seed)
    out = render_rays(
        sphere_field(),
        o,
        d,
        near,
        far,
        n_coarse,
        n_fine,
        generator=g,
        perturb=True,
        density_activation="none",
        feature_mix=feature_mix,
    )
    return out, o, d, near, far


def test_sphere_alpha_inside_disc_and_zero_outside():
    out, o, d, near, far = _render(24, 24)
    _, miss = true_hit(o, d)
    inside, outside = miss < RADIUS - 0.02, miss > RADIUS + 0.02
    assert inside.sum() > 50 and outside.sum() > 50
    assert out["alpha"][inside].min() > 0.99
    assert out["alpha"][outside].max() < 0.01
    assert torch.allclose(out["transmittance"], 1 - out["alpha"])
    # EG3D's mean mixing averages the surface with the (zero) feature just outside it;
    # density mixing keeps a hard surface's own feature
    assert out["features"][..., 0][inside].min() < 0.9
    dens, *_ = _render(24, 24, feature_mix="density")
    assert dens["features"][..., 0][inside].min() > 0.99
    assert out["rgb"].shape == (1, RES * RES, 3)
    assert out["weights"].shape == (1, RES * RES, 47) and out["depths"].shape == (1, RES * RES, 48)


def test_sphere_centre_depth():
    n_coarse = 24
    out, o, d, near, far = _render(n_coarse, 0)
    centre = (RES // 2) * RES + RES // 2
    tol = (far - near).item() / n_coarse  # one stratified bin
    assert abs(out["depth"][0, centre].item() - (DISTANCE - RADIUS)) < tol
    # empty rays report the far end of the samples
    _, miss = true_hit(o, d)
    assert out["depth"][miss > RADIUS + 0.05].min() > DISTANCE


def test_importance_sampling_reduces_depth_error():
    hit, miss = None, None
    errs = {}
    for name, (nc, nf) in {"stratified": (32, 0), "importance": (16, 16)}.items():
        out, o, d, _, _ = _render(nc, nf, seed=1)
        hit, miss = true_hit(o, d)
        m = miss < RADIUS - 0.02
        errs[name] = (out["depth"][m] - hit[m]).abs().mean().item()
    assert errs["importance"] < 0.5 * errs["stratified"], errs


def test_stratified_samples_in_bins_and_sorted():
    near = torch.full((2, 5, 1), 1.0)
    far = torch.full((2, 5, 1), 3.0)
    t = stratified_samples(near, far, 8, generator=torch.Generator().manual_seed(0))
    assert (t >= 1).all() and (t <= 3).all() and (t.diff(dim=-1) > 0).all()
    t0 = stratified_samples(near, far, 4, perturb=False)
    assert torch.allclose(t0[0, 0], torch.tensor([1.25, 1.75, 2.25, 2.75]))


def test_importance_samples_follow_weights():
    depths = torch.linspace(0, 1, 11).expand(1, 1, 11)
    w = torch.zeros(1, 1, 10)
    w[..., 6] = 1.0  # all mass in [0.6, 0.7]
    s = importance_samples(depths, w, 64, generator=torch.Generator().manual_seed(0))
    assert (s >= 0.6 - 1e-6).all() and (s <= 0.7 + 1e-6).all()


def test_composite_plain_density_matches_analytic():
    # constant density σ over length L: alpha = 1 - exp(-σ L)
    depths = torch.linspace(0, 2.0, 65).expand(1, 1, 65)
    sigma = torch.full((1, 1, 65, 1), 0.7)
    feat = torch.ones(1, 1, 65, 3)
    out = composite(sigma, feat, depths, density_activation="none")
    assert abs(out["alpha"].item() - (1 - math.exp(-1.4))) < 1e-5
    soft = composite(sigma, feat, depths)  # softplus(σ − 1)
    expected = 1 - math.exp(-math.log1p(math.exp(0.7 - 1)) * 2.0)
    assert abs(soft["alpha"].item() - expected) < 1e-5
    with pytest.raises(ValueError, match="density_activation"):
        composite(sigma, feat, depths, density_activation="bogus")


def test_to_image_row_major_and_multi_view():
    h, w = 3, 4
    uv = cams.pixel_grid(h, w)  # [HW, 2]
    x = torch.cat([uv, uv + 10], 0)[None]  # two views of one batch entry
    img = to_image(x, h, w)
    assert img.shape == (2, 2, h, w)
    assert torch.allclose(img[0, 0, 0], (torch.arange(w) + 0.5) / w)  # u along a row
    assert torch.allclose(img[1, 1, :, 0], (torch.arange(h) + 0.5) / h + 10)  # v down a column
    with pytest.raises(ValueError):
        to_image(torch.zeros(1, 13, 1), h, w)


def test_render_rays_fast_path_equals_sorted_composite():
    """The merged coarse+fine compositing (weights scattered back to unsorted samples) equals
    compositing the depth-sorted samples directly."""
    g = torch.Generator().manual_seed(3)
    w1 = torch.randn(3, 5, generator=g)

    def field(p, d):
        return (p @ w1[:, :1]) * 3, torch.sin(p @ w1[:, 1:])

    label = cams.orbit_label(torch.tensor([0.2, -0.4]), torch.tensor([0.1, 0.0]), DISTANCE)
    o, d = cams.generate_rays(label, 6)
    near, far = cams.ray_bounds(label)
    out = render_rays(field, o, d, near, far, 8, 8, generator=torch.Generator().manual_seed(0))
    pts = o[:, :, None] + out["depths"][..., None] * d[:, :, None]
    sigma, feat = field(pts.reshape(2, -1, 3), None)
    ref = composite(sigma.reshape(2, 36, 16, 1), feat.reshape(2, 36, 16, 4), out["depths"])
    for key in ("features", "alpha", "depth"):
        assert torch.allclose(out[key], ref[key], atol=1e-5), key
