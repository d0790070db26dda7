"""The one Trainer every stage's trainer subclasses: a toy regression through it learns, stops when told and
resumes to the weights of an uninterrupted run (Ψ3d's, Ψ's and E_mot's own resume tests run it at size)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from pipeline_tasks.config import TrainLoopConfig
from pipeline_tasks.training.trainer import Trainer


class ToyTrainer(Trainer):
    """Fit y = x·w* with noise drawn from the trainer's own generator, on a sampled subset each step."""

    kind = "toy"

    def prepare(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])

    def build_model(self) -> nn.Module:
        return nn.Linear(3, 1, bias=False)

    def sampler_items(self) -> np.ndarray:
        return np.arange(64)

    def train_step(self, step: int) -> dict[str, float]:
        ids = torch.from_numpy(self.sampler.next_batch())
        noise = 0.01 * torch.randn(len(ids), generator=self.gen)
        loss = ((self.net(self.x[ids]).squeeze(1) - self.y[ids] - noise) ** 2).mean()
        self.optimise(loss, step)
        return {"loss": loss.item()}

    def validate(self, step: int) -> dict[str, float]:
        return {"mse": float(((self.ema.module(self.x).squeeze(1) - self.y) ** 2).mean())}

    def finish(self, rows) -> None:
        self.final = {k: v.clone() for k, v in self.ema.module.state_dict().items()}
        self.rows = rows


def _cfg(steps: int = 60) -> TrainLoopConfig:
    return TrainLoopConfig(
        steps=steps, batch_size=8, lr=0.05, checkpoint_every=20, val_every=20, log_every=10, ema_halflife_steps=5
    )


def _run(tmp_path, stop_after=None) -> ToyTrainer:
    t = ToyTrainer(SimpleNamespace(device="cpu"), _cfg(), SimpleNamespace(path=tmp_path), stop_after)
    t.run()
    return t


def test_a_trainer_learns_through_the_shared_loop(tmp_path):
    t = _run(tmp_path)
    val = [r["val_mse"] for r in t.rows if "val_mse" in r]
    assert len(val) == 3 and val[-1] < 0.05 * val[0]


def test_a_stopped_trainer_resumes_to_the_uninterrupted_weights(tmp_path):
    whole = _run(tmp_path / "a")
    with pytest.raises(InterruptedError, match="toy stopped after 30/60 steps"):
        _run(tmp_path / "b", stop_after=30)  # killed at step 30; its last checkpoint is at 20
    resumed = _run(tmp_path / "b")
    assert all(torch.equal(whole.final[k], resumed.final[k]) for k in whole.final)
