"""One trainer: what Ψ3d, Ψ and E_mot share, so each of them says only what is its own.

:class:`Trainer` owns the seeding, the optimiser, the EMA of weights, the sampler, the resumable state
(checkpoints of models, EMA, optimisers, sampler and RNGs), the discriminator when the objective has one,
the DDP wrap, the resumable step loop (``pipeline_tasks.training.loop.run_loop``) and the early-stop rule.
A subclass fills in the hooks: its data (:meth:`prepare`), its network (:meth:`build_model`), its
objective, one optimisation step (:meth:`train_step`), validation, sample grids and the payload
(:meth:`finish`).

:meth:`Trainer.run` does, in this order (the order of random draws that makes a resumed run equal an
uninterrupted one, and keeps results equal to those of the trainers before this class):
``prepare`` → ``torch.manual_seed(seed)`` → ``build_model`` → DDP wrap → ``build_objective`` → Adam over
``optimizer_params`` → EMA → ``SeededSampler(sampler_items, sampler_batch, seed)`` →
``torch.Generator(seed + 1)`` → training state (+ the discriminator and its optimiser) → ``after_setup``
→ the loop → ranks checked in sync → stopped early? (resumable) → ``finish`` on rank 0.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline_tasks.training.checkpoint import TrainingState
from pipeline_tasks.training.distributed import SINGLE, DistContext
from pipeline_tasks.training.ema import EMA
from pipeline_tasks.training.loop import run_loop
from pipeline_tasks.training.optim import adam
from pipeline_tasks.training.sampler import SeededSampler

log = logging.getLogger("portrait4d.training")


def compiled(net: nn.Module, backend: str, device: torch.device) -> nn.Module:
    """``torch.compile(net, backend=backend)`` with a clean fallback: Dynamo's ``suppress_errors`` runs a graph that
    fails to compile eagerly (logged by torch), and inductor on a CPU without a C++ compiler is not tried at all."""
    if backend == "inductor" and device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        log.warning("compile: inductor needs a C++ compiler on the CPU and none is on PATH: training eagerly")
        return net
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    return torch.compile(net, backend=backend)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a training step: bf16 on CUDA under "auto" (anywhere under "bf16"), else None."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    if precision not in ("auto", "fp32"):
        raise ValueError(f"precision must be auto, fp32 or bf16; got {precision!r}")
    return None


class Trainer:
    """``Trainer(cfg, section, writer, stop_after, ddp).run()``; ``section``: the trainer's config section
    (``steps``, ``batch_size``, ``lr``, ``betas``, ``adam_eps``, ``ema_*``, ``seed`` and the loop's ``*_every``)."""

    kind: str = "train"  # the artifact kind, also the progress bar's label
    model_key: str = "model"  # the network's name in the resumable state (checkpoints)
    generator_key: str = "render"  # the name of the trainer's torch.Generator in the resumable state
    uses_ddp: bool = True  # wrap the network for torchrun (pipeline_tasks/distributed.py)

    def __init__(self, cfg: Any, section: Any, w: Any, stop_after: int | None, ddp: DistContext = SINGLE):
        self.cfg, self.tc, self.w, self.stop_after, self.ddp = cfg, section, w, stop_after, ddp
        self.device = ddp.device(cfg.device)
        self.objective: Any = None

    # ------------------------------------------------------------------ hooks
    def prepare(self) -> None:
        """Data and checks, before anything random is drawn."""

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_objective(self) -> Any:
        """The loss (may own a discriminator with ``discriminator`` / ``d_optimizer``), or None."""
        return None

    def optimizer_params(self) -> Any:
        return [p for p in self.model.parameters() if p.requires_grad]

    def sampler_items(self) -> np.ndarray:
        raise NotImplementedError

    def sampler_batch(self) -> int:
        return self.tc.batch_size

    def after_setup(self) -> None:
        """Validation sets and baselines, after the state is built (rank 0 only where it matters)."""

    def train_step(self, step: int) -> dict[str, float]:
        raise NotImplementedError

    def validate(self, step: int) -> dict[str, float]:
        """Scalars logged as ``val_*``; a subclass without validation sets ``validates = False``."""
        raise NotImplementedError

    validates: bool = True
    samples: bool = False

    def sample(self, step: int) -> None:
        """Write a picture of the EMA model's outputs (when ``samples``)."""

    def finish(self, rows: list[dict[str, float]]) -> None:
        """Final metrics and the payload (rank 0, after the last step)."""
        raise NotImplementedError

    def interrupted(self, steps_done: int) -> InterruptedError:
        return InterruptedError(f"{self.kind} stopped after {steps_done}/{self.tc.steps} steps")

    # ------------------------------------------------------------------ what every step does
    def optimise(self, loss: torch.Tensor, step: int, lr: float | None = None) -> None:
        """One Adam step on ``loss`` (at learning rate ``lr`` when given), then the EMA update."""
        if lr is not None:
            for group in self.opt.param_groups:
                group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=False):  # autocast covers the forward and the losses only
            loss.backward()
        self.opt.step()
        self.ema.update(self.model, step + 1)

    def step(self, step: int) -> dict[str, float]:
        """:meth:`train_step` under the run's precision (bf16 autocast with fp32 weights, or plain fp32)."""
        dtype = self.amp_dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return self.train_step(step)

    # ------------------------------------------------------------------ the template
    def run(self) -> None:
        tc, ddp = self.tc, self.ddp
        ddp.check_batch(tc.batch_size)
        self.amp_dtype = autocast_dtype(tc.precision, self.device)
        if self.device.type == "cuda":  # TF32 for the fp32 matmuls and convolutions, unless fp32 is asked for
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tc.precision != "fp32"
        self.prepare()
        torch.manual_seed(tc.seed)
        self.model = self.build_model()
        self.net = ddp.wrap(self.model) if self.uses_ddp else self.model  # forwards go through DDP
        if tc.compile:
            self.net = compiled(self.net, tc.compile_backend, self.device)
        self.objective = self.build_objective()
        self.opt = adam(self.optimizer_params(), lr=tc.lr, betas=tuple(tc.betas), eps=tc.adam_eps)
        self.ema = EMA(self.model, tc.ema_halflife_steps, tc.ema_rampup)
        self.sampler = SeededSampler(self.sampler_items(), self.sampler_batch(), tc.seed)
        self.gen = torch.Generator().manual_seed(tc.seed + 1)
        self.state = TrainingState(
            models={self.model_key: self.model},
            optimizers={self.model_key: self.opt},
            emas={self.model_key: self.ema},
            sampler=self.sampler,
            generators={self.generator_key: self.gen},
        )
        disc = getattr(self.objective, "discriminator", None)
        if disc is not None:
            self.state.models["D"] = disc
            self.state.optimizers["D"] = self.objective.d_optimizer
        self.after_setup()
        steps_done, rows = run_loop(
            tc,
            self.state,
            Path(self.w.path) / "checkpoints",
            Path(self.w.path) / "logs",
            self.step,
            self.validate if self.validates else None,
            self.sample if self.samples else None,
            desc=self.kind,
            stop_after=self.stop_after,
            is_main=ddp.is_main,
        )
        if self.uses_ddp:
            ddp.check_in_sync(self.model)
        if steps_done < tc.steps:  # stopped early on purpose (tests): the folder stays resumable
            raise self.interrupted(steps_done)
        if ddp.is_main:
            self.finish(rows)
