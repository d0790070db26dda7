"""The procedural generator: outputs, determinism, batching, parameter handling, bounds."""

import pytest
import torch

from models import cameras as cam
from models.genhead import params as P
from models.genhead import procedural as PR
from models.genhead.ground_truth import identity_from_seed, identity_ids


def front(yaw=0.0, pitch=0.0, radius=cam.DEFAULT_RADIUS):
    return cam.orbit_label(torch.tensor([yaw]), torch.tensor([pitch]), radius)


def _batch(n, seed=0):
    return P.sample_params(n, torch.Generator().manual_seed(seed))


def test_outputs_shapes_ranges_and_a_head_in_the_middle(gen):
    p = _batch(2)
    cams = torch.cat([front(), front(0.5, 0.1)])
    out = gen.render_params(p, cams, 32)
    assert out.rgb.shape == (2, 3, 32, 32) and out.alpha.shape == (2, 1, 32, 32) and out.depth.shape == (2, 1, 32, 32)
    assert out.rgb.min() >= -1 and out.rgb.max() <= 1 and out.alpha.min() >= 0 and out.alpha.max() <= 1
    # the head covers the image centre, the top corners are background
    assert (out.alpha[:, 0, 14:18, 14:18] > 0.99).all()
    assert (out.alpha[:, 0, 0, 0] < 0.01).all()
    # depth of the covered centre lies inside the head box seen from radius 4.2
    d = out.depth[:, 0, 16, 16]
    assert ((d > 4.2 - 0.65) & (d < 4.2)).all()


def test_deterministic_and_independent_of_batching(gen):
    p = _batch(3, seed=5)
    cams = cam.sample_cameras(3, torch.Generator().manual_seed(1))[0]
    a = gen.render_params(p, cams, 32)
    b = gen.render_params(p, cams, 32)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.alpha, b.alpha) and torch.equal(a.depth, b.depth)
    single = gen.render_params({k: v[1:2] for k, v in p.items()}, cams[1:2], 32)
    assert torch.allclose(single.rgb[0], a.rgb[1], atol=1e-5)


def test_multi_view_cameras_match_single_view_calls(gen):
    p = _batch(1, seed=2)
    cams = torch.cat([front(), front(-0.4)])
    multi = gen.render_params(p, cams[None], 24)
    assert multi.rgb.shape == (1, 2, 3, 24, 24)
    one = gen.render_params(p, cams[1:2], 24)
    assert torch.allclose(multi.rgb[0, 1], one.rgb[0], atol=1e-5)


def test_identities_differ_and_appearance_follows_z(gen):
    ids = [identity_from_seed(i) for i in identity_ids(11, 2)]
    zero = torch.zeros(2, 9), torch.zeros(2, 3), torch.zeros(2, 2)
    shape = torch.stack([i.shape for i in ids])
    z = torch.stack([i.z for i in ids])
    out = gen.render(shape, zero[0], zero[1], zero[2], z, front().expand(2, -1), 32)
    assert (out.rgb[0] - out.rgb[1]).abs().mean() > 0.05


def test_bad_inputs_are_rejected_with_names(gen):
    p = _batch(2)
    with pytest.raises(ValueError, match="expression"):
        gen.render(p["shape"], p["expression"][:, :3], p["pose"], p["gaze"], p["z"], front().expand(2, -1), 16)
    with pytest.raises(ValueError, match="cameras"):
        gen.render_params(p, front(), 16)
    with pytest.raises(KeyError):
        P.expression_vector(grin=1.0)


def test_head_lies_inside_the_tracing_bound_for_extreme_parameters():
    """Points inside the head (sdf < 0) must be inside the analytic bound used to start tracing."""
    g = torch.Generator().manual_seed(0)
    n = 24
    shape = torch.randn(n, 16, generator=g) * 3  # far beyond typical: factors saturate at their bounds
    expr = (torch.rand(n, 9, generator=g) > 0.5).float()
    z = torch.randn(n, P.Z_DIM, generator=g) * 3
    gaze = torch.zeros(n, 2)
    G, _ = PR.derive(shape, expr, gaze, z)
    keys = list(G)
    table = torch.stack([torch.as_tensor(G[k], dtype=torch.float32).expand(n) for k in keys])
    rows = PR._Rows(table[:, :, None], {k: i for i, k in enumerate(keys)})
    pts = (torch.rand(n, 3000, 3, generator=g) * 2 - 1) * PR.BOX_HALF
    sd = PR.head_sdf(pts[..., 0], pts[..., 1], pts[..., 2], rows)
    inside = pts[sd < 0]
    assert inside.shape[0] > 1000
    c, r = torch.tensor(PR.BOUND_CENTRE), torch.tensor(PR.BOUND_RADII)
    in_ell = (((inside - c) / r) ** 2).sum(-1) <= 1
    in_cyl = (inside[:, 0] ** 2 + (inside[:, 2] - PR.NECK_AXIS_Z) ** 2 <= PR.NECK_RADIUS**2) & (
        inside[:, 1] <= PR.NECK_TOP
    )
    assert (in_ell | in_cyl).all(), inside[~(in_ell | in_cyl)][:5]


def test_sampled_expressions_mix_neutral_single_and_mixtures():
    e = P.sample_expression(2000, torch.Generator().manual_seed(0), p_neutral=0.25, p_single=0.35)
    active = (e > 0).sum(1)
    assert abs((active == 0).float().mean() - 0.25) < 0.06  # neutral (+ the rare empty mixture)
    assert ((active == 1) & (e.max(1).values >= 0.6)).float().mean() > 0.3
    assert (active >= 2).float().mean() > 0.2
    assert e.min() >= 0 and e.max() <= 1


def test_shape_factors_are_bounded():
    f = P.shape_factors(torch.tensor([[-50.0] * 16, [50.0] * 16]))
    assert (f[0] >= 1 - P.SHAPE_SPREAD - 1e-6).all() and (f[1] <= 1 + P.SHAPE_SPREAD + 1e-6).all()
    assert (f[0] > 0.5).all()


def test_identity_from_seed_matches_stage_sampling():
    i = identity_ids(1, 3)[2]
    ident = identity_from_seed(i)
    p = P.sample_params(1, torch.Generator().manual_seed(i))
    assert torch.equal(ident.shape, p["shape"][0]) and torch.equal(ident.z, p["z"][0])
    assert set(identity_ids(1, 10)).isdisjoint(identity_ids(100_000, 10))
