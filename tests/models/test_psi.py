"""Ψ / Ψ3d behaviour: static invariance, initialisation from Ψ3d, gradients, parameter groups, presets."""

import pytest
import torch

from models import cameras as cams
from models.psi import build_psi, init_psi_from_psi3d, is_cross_attention_param, param_groups


def _inputs(cfg, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, cfg.psi.image_resolution, cfg.psi.image_resolution, generator=g) * 2 - 1
    ms = torch.randn(b, cfg.psi.motion_dim, generator=g)
    md = torch.randn(b, cfg.psi.motion_dim, generator=g)
    cam = cams.sample_cameras(b, g)[0]
    return x, ms, md, cam


def _render(psi, x, ms, md, cam):
    return psi.render(psi(x, ms, md), cam, perturb=False)


def test_psi3d_ignores_motion(micro_cfg):
    psi3d = build_psi(micro_cfg, static=True).eval()
    x, ms, md, cam = _inputs(micro_cfg)
    with torch.no_grad():
        for blk in list(psi3d.blocks_neutral) + list(psi3d.blocks_motion):  # would matter if scale != 0
            torch.nn.init.normal_(blk.cross_attn.proj.weight)
        a = psi3d(x, ms, md)
        b = psi3d(x, torch.randn_like(ms), torch.randn_like(md))
    assert torch.equal(a.triplanes, b.triplanes)
    assert not any(p.requires_grad for n, p in psi3d.named_parameters() if is_cross_attention_param(n))


def test_psi_from_psi3d_identical_at_step0_then_motion_dependent(micro_cfg):
    torch.manual_seed(1)
    psi3d = build_psi(micro_cfg, static=True).eval()
    torch.manual_seed(2)
    psi = build_psi(micro_cfg).eval()
    skipped = init_psi_from_psi3d(psi, psi3d.state_dict())
    assert skipped and all(is_cross_attention_param(n) for n in skipped)
    assert any(n.startswith("maps_") for n in skipped) and any(n.startswith("proj_y_") for n in skipped)
    assert any(".cross_attn." in n for n in skipped) and any(".cross_norm" in n for n in skipped)
    x, ms, md, cam = _inputs(micro_cfg)
    with torch.no_grad():
        ref, out = _render(psi3d, x, ms, md, cam), _render(psi, x, ms, md, cam)
    for key in ("image", "image_raw", "alpha", "depth"):
        assert (ref[key] - out[key]).abs().max() < 1e-6, key

    # one optimiser step on a motion-dependent loss: Ψ now departs from Ψ3d and depends on v_d
    opt = torch.optim.Adam(param_groups(psi, lr=1e-2), lr=1e-2)
    target = torch.tanh(md[:, :3, None, None]).expand(-1, -1, *ref["image"].shape[-2:])
    loss = (_render(psi, x, ms, md, cam)["image"] - target).abs().mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = _render(psi, x, ms, md, cam)
        other = _render(psi, x, ms, torch.randn_like(md), cam)
    assert (after["image"] - ref["image"]).abs().max() > 1e-4
    assert (after["image"] - other["image"]).abs().max() > 1e-6


def test_gradients_reach_every_trainable_parameter(micro_cfg):
    psi = build_psi(micro_cfg)
    opt = torch.optim.SGD(psi.parameters(), lr=1e-2)
    x, ms, md, cam = _inputs(micro_cfg)
    # step 0 only the zero-initialised cross-attention output projections can move; after one
    # step every trainable parameter must receive a gradient
    for step in range(2):
        opt.zero_grad()
        r = psi.render(psi(x, ms, md), cam)
        (r["image"].square().mean() + r["image_raw"].mean() + r["depth"].mean() * 0.1).backward()
        if step == 0:
            opt.step()
    missing = [n for n, p in psi.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().max() == 0)]
    assert not missing, missing


def test_param_groups_split_cross_attention(micro_cfg):
    psi = build_psi(micro_cfg)
    groups = param_groups(psi, lr=1e-4, cross_attention_lr_mult=2.5)
    by_name = {g["name"]: g for g in groups}
    assert by_name["cross_attention"]["lr"] == pytest.approx(2.5e-4) and by_name["base"]["lr"] == 1e-4
    cross_ids = {id(p) for p in by_name["cross_attention"]["params"]}
    expected = {id(p) for n, p in psi.named_parameters() if is_cross_attention_param(n)}
    assert cross_ids == expected
    all_ids = cross_ids | {id(p) for p in by_name["base"]["params"]}
    assert all_ids == {id(p) for p in psi.parameters()}
    assert len(param_groups(build_psi(micro_cfg, static=True), 1e-4)) == 1  # Ψ3d: cross frozen


def test_render_shapes_single_and_multi_view(micro_cfg):
    psi = build_psi(micro_cfg).eval()
    x, ms, md, cam = _inputs(micro_cfg)
    with torch.no_grad():
        out = psi(x, ms, md)
        assert out.triplanes.shape == (2, 3, 8, 32, 32)
        one = psi.render(out, cam, perturb=False, return_features=True)
        multi = psi.render(out, torch.stack([cam, cam.flip(0)], 1), perturb=False)
    assert one["image"].shape == (2, 3, 32, 32) and one["image_raw"].shape == (2, 3, 16, 16)
    assert one["alpha"].shape == (2, 1, 16, 16) and one["features"].shape == (2, 8, 16, 16)
    assert multi["image"].shape == (2, 2, 3, 32, 32)
    assert torch.allclose(multi["image"][:, 0], one["image"], atol=1e-5)
    with pytest.raises(ValueError, match="resolution"):
        psi(torch.zeros(1, 3, 16, 16), ms[:1], md[:1])
    with pytest.raises(ValueError, match="motion"):
        psi(x)


def test_plane_frame_puts_a_pixel_where_the_renderer_looks_up_its_point():
    """A feature at the pixel where a frontal camera sees the depth-0 point (x, y) is found by the renderer's
    own (x,y)-plane lookup at that point, not at its mirror image (image rows run along −y)."""
    from models.psi.network import to_plane_frame
    from models.rendering.triplane import sample_triplane

    res, box_half = 64, 0.65
    frontal = cams.orbit_label(torch.tensor([0.0]), torch.tensor([0.0]))
    point = torch.tensor([[[0.2, 0.1, 0.0]]])
    uv, _ = cams.project(point, frontal)
    u, v = float(uv[0, 0, 0]) * res - 0.5, float(uv[0, 0, 1]) * res - 0.5
    yy, xx = torch.meshgrid(torch.arange(res).float(), torch.arange(res).float(), indexing="ij")
    image_features = torch.exp(-((xx - u) ** 2 + (yy - v) ** 2) / 8.0)[None, None]  # [1,1,H,W] blob at the pixel
    plane = to_plane_frame(image_features, 64, box_half)
    planes = torch.cat([plane, torch.zeros_like(plane), torch.zeros_like(plane)])[None]  # only the (x,y) plane
    at = lambda p: float(sample_triplane(planes, torch.tensor([[p]]), box_half)[0, 0, 0, 0])  # noqa: E731
    assert at([0.2, 0.1, 0.0]) > 0.75
    assert at([0.2, -0.1, 0.0]) < 0.05 and at([-0.2, 0.1, 0.0]) < 0.05  # flipped or mirrored: nothing there
    assert at([0.2, 0.1, 0.3]) == pytest.approx(at([0.2, 0.1, 0.0]))  # the (x,y) plane is shared along depth


def test_plane_aligned_psi_runs_and_differs(micro_cfg):
    aligned = micro_cfg.model_copy(update={"psi": micro_cfg.psi.model_copy(update={"plane_aligned": True})})
    torch.manual_seed(3)
    a = build_psi(micro_cfg, static=True).eval()
    torch.manual_seed(3)
    b = build_psi(aligned, static=True).eval()
    x, ms, md, cam = _inputs(micro_cfg)
    with torch.no_grad():
        ta, tb = a(x).triplanes, b(x).triplanes
    assert ta.shape == tb.shape and not torch.allclose(ta, tb)


@pytest.mark.parametrize("bf16", [False, True])
def test_dilated_convolutions_backward_equals_the_library_convolution(bf16):
    """The global encoder's dilation ≥ 4 convolutions compute their weight gradient from gathered taps on the CPU:
    the same output, input gradient and weight gradient as ``F.conv2d`` under autograd (bf16 autocast: to bf16
    rounding), and the swap leaves names, weights and other convolutions alone."""
    from models.psi.encoders import DilatedConv2d, GlobalEncoder, use_taps_weight_grad

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3, padding=4, dilation=4, bias=False)
    plain = torch.nn.Conv2d(6, 5, 3, padding=1, bias=False)
    seq = use_taps_weight_grad(torch.nn.Sequential(conv, plain))
    assert type(seq[0]) is DilatedConv2d and type(seq[1]) is torch.nn.Conv2d
    x0 = torch.randn(2, 6, 8, 8)
    weights = torch.randn(2, 5, 8, 8)

    def grads(fn):
        conv.weight.grad = None
        x = x0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = fn(x)
        (y.float() * weights).sum().backward()
        return y.float(), x.grad, conv.weight.grad

    ours = grads(seq[0])
    ref = grads(lambda x: torch.nn.functional.conv2d(x, conv.weight, None, 1, 4, 4))
    tol = 2e-2 if bf16 else 1e-5
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype and (a - b).abs().max() <= tol * (1 + b.abs().max())
    enc = GlobalEncoder(16, (2, 4, 6), 0.0, backbone="resnet18")
    swapped = {n for n, m in enc.named_modules() if isinstance(m, DilatedConv2d)}
    assert swapped and all(max(enc.get_submodule(n).dilation) >= 4 for n in swapped)
    assert "backbone.layer4.1.conv2.weight" in enc.state_dict()
