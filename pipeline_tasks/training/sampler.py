"""Deterministic, resumable index sampling.

Epoch ``e`` visits the indices in the permutation drawn from ``numpy.random.default_rng((seed, e))``;
the sampler's whole position is (epoch, offset) plus an auxiliary generator for per-batch choices
(e.g. which views), so ``state_dict()`` is tiny and a resumed run draws exactly the same batches.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class SeededSampler:
    """``next_batch()`` → the next ``batch_size`` entries of ``indices`` (epochs wrap seamlessly)."""

    def __init__(self, indices: Sequence[int] | int, batch_size: int, seed: int, shuffle: bool = True):
        self.indices = np.arange(indices) if isinstance(indices, (int, np.integer)) else np.asarray(indices)
        if self.indices.size == 0:
            raise ValueError("SeededSampler needs at least one index to sample from")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.offset = 0
        self.rng = np.random.default_rng((self.seed, 2**31 - 1))  # auxiliary choices (views, crops…)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        return self.indices[np.random.default_rng((self.seed, epoch)).permutation(self.indices.size)]

    def next_batch(self, batch_size: int | None = None) -> np.ndarray:
        n = self.batch_size if batch_size is None else int(batch_size)
        out: list[np.ndarray] = []
        while n > 0:
            order = self._order(self.epoch)
            take = order[self.offset : self.offset + n]
            out.append(take)
            n -= take.size
            self.offset += take.size
            if self.offset >= order.size:
                self.epoch += 1
                self.offset = 0
        return np.concatenate(out)

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "n": int(self.indices.size),
            "epoch": self.epoch,
            "offset": self.offset,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed or state["n"] != self.indices.size:
            raise ValueError(
                f"sampler state is for seed={state['seed']}, n={state['n']}; this sampler has "
                f"seed={self.seed}, n={self.indices.size} (the data or seed changed since the checkpoint)"
            )
        self.epoch = int(state["epoch"])
        self.offset = int(state["offset"])
        self.rng.bit_generator.state = state["rng"]
