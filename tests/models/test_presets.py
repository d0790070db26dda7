"""Presets: YAML and code agree; the paper preset has the published sizes (built on the meta device)."""

import pytest
import torch
from pydantic import ValidationError

from models.config import ModelConfig, PsiConfig
from models.param_counts import count, preset_config
from models.psi import build_psi
from models.psi.encoders import add_coords


@pytest.mark.parametrize("name", ["tiny", "learn", "small", "paper"])
def test_presets_load(name):
    cfg = preset_config(name)
    assert cfg.preset == name
    assert cfg.psi.image_resolution == cfg.render.image_resolution


def test_paper_preset_matches_published_sizes():
    cfg = preset_config("paper")
    psi = build_psi(cfg, device="meta")
    x = torch.zeros(1, 3, 512, 512, device="meta")
    v = torch.zeros(1, 548, device="meta")
    x5 = add_coords(x)
    g = psi.global_encoder(x5)
    assert tuple(g.shape) == (1, 256, 64, 64)  # ASPP output 256×64×64
    tokens = psi.patch_embed(g)
    assert tuple(tokens.shape) == (1, 32, 32, 1024)  # 1024 tokens of width 1024
    assert tuple(psi.detail_encoder(x5).shape) == (1, 96, 256, 256)
    assert len(psi.blocks_neutral) == 4 and len(psi.blocks_motion) == 4
    assert all(b.attn.num_heads == 4 and b.cross_attn.num_heads == 4 for b in psi.blocks_neutral)
    ctx = psi.proj_y_motion(psi.maps_motion(v))
    assert tuple(ctx.shape) == (1, 64, 1024)  # 64 motion tokens of width 1024
    assert psi.maps_neutral.net[0].in_features == 548
    out = psi(x, v, v)
    assert tuple(out.triplanes.shape) == (1, 3, 32, 256, 256)
    r = cfg.render
    assert (r.n_coarse, r.n_fine, r.neural_resolution, r.image_resolution) == (48, 48, 128, 512)
    rendered = psi.render(out, torch.zeros(1, 25, device="meta"))
    assert tuple(rendered["image"].shape) == (1, 3, 512, 512)
    assert tuple(rendered["image_raw"].shape) == (1, 3, 128, 128)


def test_param_counts_are_ordered_by_preset():
    n = {p: count(preset_config(p))["psi_total"] for p in ("tiny", "small", "paper")}
    assert n["tiny"] < n["small"] < n["paper"]


def test_inconsistent_configs_are_refused():
    with pytest.raises(ValidationError, match="token_grid"):
        PsiConfig(image_resolution=64, token_grid=3)
    with pytest.raises(ValidationError, match="image_resolution"):
        ModelConfig(psi=PsiConfig(image_resolution=128, token_grid=8, triplane_resolution=64))
    with pytest.raises(ValidationError):
        PsiConfig(not_a_field=1)
