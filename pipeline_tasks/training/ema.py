"""Exponential moving average of weights, as in StyleGAN/EG3D/Portrait4D (facts §6).

The official code counts in images (half-life 10 kimg, ramp-up 0.05); here the half-life is in
optimiser steps so it does not depend on the batch size of a preset. With ramp-up r, the half-life
in force at step t is ``min(halflife, t · r)``, so early weights (random) are forgotten quickly.
The averaged copy is what gets evaluated and published.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """``ema = EMA(model, halflife_steps=50, rampup=0.05)``; after each optimiser step ``ema.update(model, step)``."""

    def __init__(self, model: nn.Module, halflife_steps: float, rampup: float | None = 0.05):
        if halflife_steps < 0:
            raise ValueError(f"EMA half-life must be ≥ 0 steps, got {halflife_steps}")
        self.halflife_steps = float(halflife_steps)
        self.rampup = rampup
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.num_updates = 0

    def beta(self, step: int) -> float:
        """Decay used at ``step`` (1-based count of optimiser steps taken so far)."""
        halflife = self.halflife_steps
        if self.rampup is not None and self.rampup > 0:
            halflife = min(halflife, step * self.rampup)
        if halflife <= 0:
            return 0.0
        return 0.5 ** (1.0 / halflife)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend ``model``'s parameters into the average; buffers (e.g. norm statistics) are copied."""
        beta = self.beta(step)
        src = dict(model.named_parameters())
        ema_params = [p for _, p in self.module.named_parameters()]
        new = [src[name].detach().to(p.dtype) for name, p in self.module.named_parameters()]
        torch._foreach_lerp_(ema_params, new, 1.0 - beta)  # ema ← β·ema + (1 − β)·θ, one kernel per dtype/device group
        src_b = dict(model.named_buffers())
        for name, b_ema in self.module.named_buffers():
            b_ema.copy_(src_b[name])
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.module.state_dict(),
            "halflife_steps": self.halflife_steps,
            "rampup": self.rampup,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state.get("num_updates", 0))
