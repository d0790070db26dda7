"""Device and seeding helpers shared by the trainers."""

from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} was asked for but torch sees no CUDA GPU; use device=cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global state and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
