"""Training precision (``precision`` of every training section): bf16 autocast with fp32 weights on CUDA by
default, fp32 on the CPU; the bf16 path is exercised here on the CPU (``torch.autocast("cpu", bfloat16)``)."""

from __future__ import annotations

import pytest
import torch

from models import cameras as cam
from models.genhead.ground_truth import GroundTruth, identity_ids
from models.psi import build_psi
from pipeline_tasks.config import load_config
from pipeline_tasks.training.objective import PsiObjective
from pipeline_tasks.training.trainer import autocast_dtype
from tests.pipeline_tasks.training.mlp_trainer import MLPTrainer, run_mlp


def test_auto_is_bf16_on_cuda_and_fp32_elsewhere():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cuda) is torch.bfloat16 and autocast_dtype("auto", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp32", cuda) is None
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("fp16", cpu)
    assert load_config("tiny").psi3d.precision == "auto"


def loss_grad_and_dtype(model, hooked, loss_fn, dtype):
    """One forward/backward of ``loss_fn()`` under ``dtype`` autocast (None: fp32): its loss, the flat gradient of
    ``model`` and the dtype of ``hooked``'s output (what the layer really computed in)."""
    model.zero_grad(set_to_none=True)
    seen = {}
    hook = hooked.register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype))
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = loss_fn()
    hook.remove()
    loss.float().backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(loss), grad, seen["dtype"]


class Probe(MLPTrainer):
    """Records what one step sees: the dtype of a layer's output, and the weights' and gradients' dtypes."""

    def train_step(self, step: int) -> dict[str, float]:
        y = self.net(self.inputs())
        self.seen = {"activation": y.dtype, "autocast": torch.is_autocast_enabled("cpu")}
        self.optimise((y.float() ** 2).mean(), step)
        self.seen["weight"] = self.model[0].weight.dtype
        self.seen["grad"] = self.model[0].weight.grad.dtype
        return {"loss": 0.0}


@pytest.mark.parametrize("precision, activation", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_trainer_steps_under_its_precision_with_fp32_weights(tmp_path, precision, activation):
    t = run_mlp(Probe, tmp_path, steps=2, precision=precision)
    assert t.seen["activation"] is activation and t.seen["autocast"] is (precision == "bf16")
    assert t.seen["weight"] is torch.float32 and t.seen["grad"] is torch.float32
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the step


def test_one_psi3d_step_in_bf16_matches_fp32_within_tolerance():
    """Ψ3d's forward, render and official losses on rendered heads: the bf16-autocast loss and gradient agree
    with fp32's (loss within 1%, gradient direction cosine > 0.99), and the network really ran in bf16."""
    cfg = load_config("tiny")
    torch.manual_seed(0)
    psi = build_psi(cfg.model, static=True)
    objective = PsiObjective(cfg.model, cfg.psi3d.losses, lr=1e-3)
    res = cfg.model.psi.image_resolution
    ids = identity_ids(3, 2)
    gt = GroundTruth()
    src_cams = cam.orbit_label(torch.zeros(2), torch.zeros(2))
    tgt_cams = cam.orbit_label(torch.tensor([0.4, -0.3]), torch.tensor([0.05, -0.1]))
    source = gt.render(ids, src_cams, res).rgb
    target = gt.render(ids, tgt_cams, res)
    real = torch.ones(2, dtype=torch.bool)

    def loss():
        out = psi.render(psi(source), tgt_cams, generator=torch.Generator().manual_seed(1))
        return objective.generator_loss(out, target.rgb, target.alpha, tgt_cams, real, step=0)[0]

    l32, g32, d32 = loss_grad_and_dtype(psi, psi.detail_encoder, loss, None)
    l16, g16, d16 = loss_grad_and_dtype(psi, psi.detail_encoder, loss, torch.bfloat16)
    assert d32 is torch.float32 and d16 is torch.bfloat16
    assert l16 == pytest.approx(l32, rel=0.01)  # measured: 2.0723 vs 2.0731
    assert float(torch.nn.functional.cosine_similarity(g32, g16, dim=0)) > 0.99  # measured 0.9992


def test_one_analyser_step_in_bf16_matches_fp32_within_tolerance():
    """E_mot's synthetic analyser (what stage 2b trains; the learn preset trains it in bf16): on rendered heads
    with their true labels, the bf16-autocast regression loss and gradient agree with fp32's, and its
    convolutions really ran in bf16."""
    from models.motion.synthetic_analyser import SyntheticAnalyser

    torch.manual_seed(0)
    model = SyntheticAnalyser(motion_dim=16, identity_dim=8, input_size=32, width=8, stem_convs=2)
    ids = identity_ids(5, 4)
    expression = torch.rand(4, 9) * (torch.rand(4, 9) < 0.4)
    images = GroundTruth().render(ids, cam.orbit_label(torch.zeros(4), torch.zeros(4)), 32, expression=expression).rgb
    labels = model.standardise(expression, torch.zeros(4, 2))

    def loss():
        return ((model.forward_all(images, detach_identity=True)["pred_std"].float() - labels) ** 2).mean()

    l32, g32, d32 = loss_grad_and_dtype(model, model.stem[0], loss, None)
    l16, g16, d16 = loss_grad_and_dtype(model, model.stem[0], loss, torch.bfloat16)
    assert d32 is torch.float32 and d16 is torch.bfloat16
    assert l16 == pytest.approx(l32, rel=0.02)  # measured: 0.07759 vs 0.07767
    assert float(torch.nn.functional.cosine_similarity(g32, g16, dim=0)) > 0.99  # measured 0.99991
