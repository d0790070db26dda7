"""Losses (LPIPS offline, identity backends, adversarial, schedules) and checkpoints."""

import warnings

import pytest
import torch
import torch.nn as nn

from models import losses
from models.checkpoints import CheckpointMismatchError, load_checkpoint, save_checkpoint
from models.config import LossConfig, LossTerm
from models.param_counts import preset_config


def test_lpips_offline_and_sensible():
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        lp = losses.LPIPSLoss("vgg")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert lp(x, x).item() < 1e-6
    assert lp(x, torch.rand(2, 3, 32, 32) * 2 - 1).item() > lp(x, x + 0.01).item()
    assert not any(p.requires_grad for p in lp.parameters())
    lp2 = losses.LPIPSLoss("vgg")  # same (seeded) trunk every time
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(lp(x, y), lp2(x, y))


def test_identity_backends(tmp_path):
    assert losses.build_identity_loss(LossConfig(identity_backend="none")) is None
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        losses.build_identity_loss(LossConfig(identity_backend="arcface", arcface_weights=str(missing)))
    with pytest.raises(FileNotFoundError, match="arcface_weights"):
        losses.build_identity_loss(LossConfig(identity_backend="arcface"))
    path = tmp_path / "backbone.pth"
    torch.save(losses.iresnet18().state_dict(), path)
    arc = losses.build_identity_loss(LossConfig(identity_backend="arcface", arcface_weights=str(path)))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert arc(x, x).abs().item() < 1e-5
    emb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    syn = losses.build_identity_loss(LossConfig(identity_backend="synthetic"), synthetic_embedder=emb)
    pred = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_()
    val = syn(pred, torch.rand(2, 3, 16, 16))
    val.backward()
    assert 0 < val.item() <= 2 and pred.grad is not None
    with pytest.raises(ValueError, match="synthetic"):
        losses.build_identity_loss(LossConfig(identity_backend="synthetic"))


def test_adversarial_and_schedule():
    good, bad = torch.full((4, 1), 5.0), torch.full((4, 1), -5.0)
    assert losses.generator_adversarial_loss(good) < losses.generator_adversarial_loss(bad)
    assert losses.discriminator_adversarial_loss(good, bad) < losses.discriminator_adversarial_loss(bad, good)
    cfg = LossConfig(l1=LossTerm(weight=2.0), adversarial=LossTerm(weight=0.5, start_step=100))
    terms = {"l1": torch.tensor(1.0), "adversarial": torch.tensor(3.0)}
    assert losses.weighted_total(terms, cfg, step=10)[0].item() == pytest.approx(2.0)
    assert losses.weighted_total(terms, cfg, step=100)[0].item() == pytest.approx(3.5)
    with pytest.raises(KeyError):
        losses.weighted_total({"bogus": torch.tensor(1.0)}, cfg, 0)


def test_checkpoint_roundtrip_and_preset_mismatch(tmp_path):
    cfg = preset_config("tiny")
    net = nn.Linear(3, 2)
    p = save_checkpoint(tmp_path / "ckpt.pt", cfg, {"net": net}, extra={"step": 7})
    ck = load_checkpoint(p, expected=cfg)
    assert ck.preset == "tiny" and ck.extra["step"] == 7 and ck.config == cfg
    other = nn.Linear(3, 2)
    ck.load_into({"net": other})
    assert torch.equal(other.weight, net.weight)
    with pytest.raises(CheckpointMismatchError, match="'tiny'.*'small'"):
        load_checkpoint(p, expected=preset_config("small"))
    with pytest.raises(CheckpointMismatchError, match="'small'"):
        load_checkpoint(p, expected="small")
    changed = cfg.model_copy(update={"psi": cfg.psi.model_copy(update={"embed_dim": 192})})
    with pytest.raises(CheckpointMismatchError, match="embed_dim"):
        load_checkpoint(p, expected=changed)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
