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


def dask_worker_index() -> int | None:
    """This process's index among the Dask workers (a local cluster names them 0, 1, …), or None outside a worker.
    A worker with a non-numeric name gets a stable number from its name."""
    import sys
    import zlib

    distributed = sys.modules.get("distributed")  # never imported here: a worker has already imported it
    if distributed is None:
        return None
    try:
        name = distributed.get_worker().name
    except ValueError:  # not in a worker
        return None
    return int(name) if str(name).isdigit() else zlib.crc32(str(name).encode())


def worker_device(spec: str = "auto") -> torch.device:
    """:func:`resolve_device`, pinned per Dask worker: worker i of a machine with n GPUs takes ``cuda:(i mod n)``,
    so the workers of one machine never share a GPU while there are as many GPUs as workers. A worker started with
    its own ``CUDA_VISIBLE_DEVICES`` sees one GPU and takes it."""
    dev = resolve_device(spec)
    if dev.type != "cuda" or dev.index is not None:
        return dev
    index = dask_worker_index()
    if index is None:
        return dev
    return torch.device("cuda", index % max(1, torch.cuda.device_count()))
