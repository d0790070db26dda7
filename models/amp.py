"""Autocast helpers for the hand-written autograd nodes (the tri-plane decoder MLP, the dilated convolutions): they
compute in the dtype autocast would choose, with autocast itself off inside, and hand gradients back in the dtypes
of their inputs (fp32 master weights stay fp32)."""

from __future__ import annotations

import contextlib

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give a matmul or convolution of ``x`` here (its autocast dtype inside autocast,
    else ``x``'s own)."""
    kind = x.device.type
    if torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def no_autocast(kind: str):
    """Autocast off for ``kind`` (a no-op context on devices without autocast, e.g. ``meta``)."""
    return torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind) else contextlib.nullcontext()
