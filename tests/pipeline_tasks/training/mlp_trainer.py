"""A few steps of a small MLP through the real ``Trainer`` (its precision, compile, optimiser and loop), for tests
of what the trainer does around a step; a subclass says what one step is."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from pipeline_tasks.config import TrainLoopConfig
from pipeline_tasks.training.trainer import Trainer


class MLPTrainer(Trainer):
    """8 → 16 → 1 MLP, 16 sampler items, no validation; ``losses`` holds the logged losses after ``run``."""

    kind = "mlp"
    validates = False

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def sampler_items(self) -> np.ndarray:
        return np.arange(16)

    def inputs(self) -> torch.Tensor:
        return torch.randn(4, 8, generator=self.gen)

    def finish(self, rows) -> None:
        self.losses = [r["loss"] for r in rows if "loss" in r]


def run_mlp(cls: type[MLPTrainer], folder, steps: int, **overrides) -> MLPTrainer:
    """``cls`` trained ``steps`` steps on the CPU into ``folder`` with these ``TrainLoopConfig`` overrides."""
    cfg = TrainLoopConfig(steps=steps, batch_size=4, checkpoint_every=10, log_every=1, **overrides)
    t = cls(SimpleNamespace(device="cpu"), cfg, SimpleNamespace(path=folder), None)
    t.run()
    return t
