"""Resumable training state: one file per checkpoint, written atomically, restored exactly.

A checkpoint holds everything that decides the rest of a run: model(s), EMA(s), optimiser(s),
(schedulers,) the data sampler, the step, and every random state — torch CPU and CUDA, Python,
NumPy's global state and each ``torch.Generator`` the trainer uses. A run killed after checkpoint
k and resumed from it therefore reaches bit-identical weights to an uninterrupted run (same
device). Files are ``<dir>/step_<00000123>.pt``, written to a temporary name and ``os.replace``-d,
so a kill mid-write never leaves a truncated checkpoint that reads as the latest one.
Put ``<dir>`` inside the artifact writer's temporary folder (``w.path / "checkpoints"``).
"""

from __future__ import annotations

import os
import random
import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

CHECKPOINT_RE = re.compile(r"^step_(\d{8,})\.pt$")
FORMAT = "p4d-training-state/1"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the objects it is loaded into."""


class UnreadableCheckpoint(CheckpointError):
    """The file itself cannot be read (corrupt, truncated, or not plain tensors and data)."""


def checkpoint_path(ckpt_dir: str | Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:08d}.pt"


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Complete checkpoint files in ``ckpt_dir``, oldest step first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step, or None (no folder / no checkpoint yet)."""
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random state a step may draw from."""
    return {
        "python": random.getstate(),
        "numpy": _plain_numpy_state(np.random.get_state()),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }


def _plain_numpy_state(state: tuple) -> tuple:
    """NumPy's legacy global state with its key array as a list: plain data that ``weights_only`` loading accepts."""
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached))


def restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch_cpu"])
    cuda_states = state.get("torch_cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # another GPU count: restore what lines up (exact resume needs the same devices)
            for i, s in enumerate(cuda_states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise CheckpointError(f"checkpoint has no state for torch.Generator {name!r} (has {sorted(saved)})")
        gen.set_state(saved[name])


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary sibling, fsync, then ``os.replace`` (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _state_dicts(objs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.state_dict() for k, v in objs.items()}


def _load_into(kind: str, objs: Mapping[str, Any], saved: Mapping[str, Any], path: Path) -> None:
    missing = sorted(set(objs) - set(saved))
    if missing:
        raise CheckpointError(f"{path}: no {kind} state for {missing} (it has {sorted(saved)})")
    for k, obj in objs.items():
        try:
            obj.load_state_dict(saved[k])
        except Exception as exc:  # shape/key mismatch: name the file and the object
            raise CheckpointError(f"{path}: cannot load {kind} {k!r}: {exc}") from exc


@dataclass
class TrainingState:
    """The stateful objects of one trainer, saved and restored together.

    ``models``, ``emas``, ``optimizers``, ``schedulers`` and ``extra`` map names to objects with
    ``state_dict``/``load_state_dict`` (``extra`` e.g. a GradScaler or an augment pipeline);
    ``sampler`` likewise; ``generators`` are the trainer's ``torch.Generator``\\ s.
    """

    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    emas: dict[str, Any] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    sampler: Any = None
    generators: dict[str, torch.Generator] = field(default_factory=dict)

    def state_dict(self, step: int, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "step": int(step),
            "models": _state_dicts(self.models),
            "optimizers": _state_dicts(self.optimizers),
            "emas": _state_dicts(self.emas),
            "schedulers": _state_dicts(self.schedulers),
            "extra": _state_dicts(self.extra),
            "sampler": self.sampler.state_dict() if self.sampler is not None else None,
            "rng": capture_rng_state(self.generators),
            "meta": dict(meta or {}),
        }

    def save(
        self, ckpt_dir: str | Path, step: int, meta: Mapping[str, Any] | None = None, keep: int | None = 2
    ) -> Path:
        """Write ``step_<step>.pt`` atomically; keep only the newest ``keep`` checkpoints (None → all)."""
        path = atomic_torch_save(self.state_dict(step, meta), checkpoint_path(ckpt_dir, step))
        if keep is not None and keep > 0:
            for old in list_checkpoints(ckpt_dir)[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def load(self, path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Restore every object and random state from ``path``; returns ``{"step", "meta"}``."""
        path = Path(path)
        try:
            # tensors and plain data only: a checkpoint file cannot run code when it is loaded
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            raise UnreadableCheckpoint(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a training-state checkpoint (format {FORMAT!r})")
        _load_into("model", self.models, ckpt["models"], path)
        _load_into("optimizer", self.optimizers, ckpt["optimizers"], path)
        _load_into("EMA", self.emas, ckpt["emas"], path)
        _load_into("scheduler", self.schedulers, ckpt["schedulers"], path)
        _load_into("extra", self.extra, ckpt["extra"], path)
        if self.sampler is not None:
            if ckpt["sampler"] is None:
                raise CheckpointError(f"{path} has no sampler state")
            self.sampler.load_state_dict(ckpt["sampler"])
        restore_rng_state(ckpt["rng"], self.generators)
        return {"step": int(ckpt["step"]), "meta": ckpt.get("meta", {})}

    def resume(self, ckpt_dir: str | Path, map_location: str | torch.device = "cpu") -> int:
        """Load the newest *readable* checkpoint in ``ckpt_dir``; returns the step to continue from (0 if none).

        A file that cannot be read (torn by a disk fault, truncated by a copy) is reported and the older
        one kept beside it is used; when none can be read the run stops with every file and its reason,
        rather than silently starting over. A checkpoint that reads but does not fit the models raises."""
        found = list_checkpoints(ckpt_dir)
        reasons = []
        for path in reversed(found):
            try:
                return self.load(path, map_location)["step"]
            except UnreadableCheckpoint as exc:
                reasons.append(str(exc))
                warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=2)
        if reasons:
            raise CheckpointError(
                f"no readable checkpoint in {ckpt_dir}:\n  "
                + "\n  ".join(reasons)
                + "\ndelete the folder to start this stage over"
            )
        return 0
