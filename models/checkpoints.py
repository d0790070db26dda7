"""Network checkpoints: state dicts saved together with the ModelConfig (and its preset) that built them.

A checkpoint is one ``torch.save`` file of plain data (loads with ``weights_only=True``):
``{"format", "preset", "model_config" (JSON), "state_dicts": {name: state_dict}, "extra": {...}}``.
Loading it for a different preset (or a config with different architecture fields) fails with
a message naming both.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.config import ModelConfig

FORMAT = "p4d-checkpoint-v1"


class CheckpointMismatchError(ValueError):
    """The checkpoint was built for another preset / architecture than the one asked for."""


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dicts: dict[str, dict[str, torch.Tensor]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def preset(self) -> str:
        return self.config.preset

    def load_into(self, modules: dict[str, nn.Module], strict: bool = True) -> None:
        """Load the named state dicts into ``modules`` (e.g. ``{"psi": psi, "D": d}``)."""
        for name, module in modules.items():
            if name not in self.state_dicts:
                raise KeyError(f"checkpoint has no '{name}' (it has {sorted(self.state_dicts)})")
            module.load_state_dict(self.state_dicts[name], strict=strict)


def save_checkpoint(
    path: str | os.PathLike, config: ModelConfig, modules: dict[str, nn.Module | dict], extra: dict | None = None
) -> Path:
    """Write atomically (temp file + rename): a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "preset": config.preset,
        "model_config": config.model_dump_json(),
        "state_dicts": {k: (m.state_dict() if isinstance(m, nn.Module) else m) for k, m in modules.items()},
        "extra": extra or {},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} vs {vb!r}")
    return out


def load_checkpoint(
    path: str | os.PathLike, expected: ModelConfig | str | None = None, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Read a checkpoint; with ``expected`` (a ModelConfig or a preset name) refuse a mismatch."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint")
    config = ModelConfig.model_validate_json(payload["model_config"])
    if expected is not None:
        want = expected if isinstance(expected, str) else expected.preset
        if want != config.preset:
            raise CheckpointMismatchError(
                f"checkpoint {path} was saved for preset '{config.preset}', but preset '{want}' was requested"
            )
        if isinstance(expected, ModelConfig):
            diffs = _diff(config.model_dump(mode="json"), expected.model_dump(mode="json"))
            if diffs:
                raise CheckpointMismatchError(
                    f"checkpoint {path} (preset '{config.preset}') differs from the requested preset '{want}' in: "
                    + "; ".join(diffs[:8])
                )
    return Checkpoint(config, payload["state_dicts"], payload.get("extra", {}))
