"""The opt-in ``compile`` of a training section: the network's forward goes through ``torch.compile``; a backend that
fails leaves training running eagerly with the same results, and inductor without a C++ compiler is not tried."""

from __future__ import annotations

import logging

import pytest
import torch
import torch._dynamo

from pipeline_tasks.training import trainer as trainer_mod
from tests.pipeline_tasks.training.mlp_trainer import MLPTrainer, run_mlp

_backend_calls: list[str] = []


@torch._dynamo.register_backend(name="p4d_test_failing")
def _failing_backend(gm, example_inputs):
    _backend_calls.append("called")
    raise RuntimeError("this backend cannot compile anything")


class Regression(MLPTrainer):
    """Regresses the sum of the inputs; logs each step's loss."""

    def train_step(self, step: int) -> dict[str, float]:
        x = self.inputs()
        loss = ((self.net(x) - x.sum(1, keepdim=True)) ** 2).mean()
        self.optimise(loss, step)
        return {"loss": float(loss.detach())}


def _run(tmp_path, name, **overrides) -> Regression:
    return run_mlp(Regression, tmp_path / name, steps=3, **overrides)


@pytest.fixture
def restore_dynamo():
    yield
    torch._dynamo.reset()
    torch._dynamo.config.suppress_errors = False


def test_a_backend_that_fails_leaves_training_eager_with_the_same_losses(tmp_path, restore_dynamo):
    eager = _run(tmp_path, "eager")
    _backend_calls.clear()
    failing = _run(tmp_path, "failing", compile=True, compile_backend="p4d_test_failing")
    assert _backend_calls, "the network's forward did not go through torch.compile"
    assert isinstance(failing.net, torch._dynamo.eval_frame.OptimizedModule)
    assert len(eager.losses) == 3 and failing.losses == eager.losses


def test_a_compiled_forward_trains_to_the_eager_losses(tmp_path, restore_dynamo):
    eager = _run(tmp_path, "eager")
    traced = _run(tmp_path, "traced", compile=True, compile_backend="aot_eager")  # Dynamo + AOTAutograd, no C++
    assert isinstance(traced.net, torch._dynamo.eval_frame.OptimizedModule)
    assert traced.losses == pytest.approx(eager.losses, rel=1e-5)
    assert not isinstance(eager.net, torch._dynamo.eval_frame.OptimizedModule)


def test_inductor_on_a_cpu_without_a_compiler_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(trainer_mod.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="portrait4d.training"):
        t = _run(tmp_path, "nocc", compile=True)
    assert not isinstance(t.net, torch._dynamo.eval_frame.OptimizedModule)
    assert "needs a C++ compiler" in caplog.text and len(t.losses) == 3
