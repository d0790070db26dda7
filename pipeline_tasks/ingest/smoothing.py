"""One-Euro filtering of per-frame transforms (as the published preprocessing's ``use_smooth``).

Ingestion is offline, so the filter runs forwards and backwards and the two are averaged: the
causal filter's lag (a fast head roll would trail by ~2 frames) cancels to first order while the
jitter is removed as by one pass. Per channel, run independently on segments (a scene cut or a
lost track starts a new segment, so the filter never smears across it).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline_tasks.ingest.config import OneEuroConfig


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(x: np.ndarray, fps: float, cfg: OneEuroConfig) -> np.ndarray:
    """Zero-lag One-Euro: mean of the causal filter run forwards and backwards over ``x [T, C]``."""
    x = np.asarray(x, dtype=np.float64)
    if not cfg.enabled or len(x) < 2:
        return x.copy()
    return 0.5 * (one_euro_causal(x, fps, cfg) + one_euro_causal(x[::-1], fps, cfg)[::-1])


def one_euro_causal(x: np.ndarray, fps: float, cfg: OneEuroConfig) -> np.ndarray:
    """The causal One-Euro filter (Casiez et al. 2012) of ``x [T, C]`` sampled at ``fps``."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return x.copy()
    dt = 1.0 / fps
    out = np.empty_like(x)
    out[0] = x[0]
    dx = np.zeros(x.shape[1:])
    a_d = _alpha(cfg.d_cutoff, dt)
    for t in range(1, len(x)):
        dx = a_d * (x[t] - out[t - 1]) / dt + (1 - a_d) * dx
        a = _alpha(cfg.min_cutoff + cfg.beta * np.abs(dx), dt)
        out[t] = a * x[t] + (1 - a) * out[t - 1]
    return out


def one_euro_segments(x: np.ndarray, fps: float, cfg: OneEuroConfig, starts: np.ndarray) -> np.ndarray:
    """``one_euro`` restarted at every index where ``starts`` is True."""
    x = np.asarray(x, dtype=np.float64)
    cut = np.flatnonzero(starts)
    bounds = sorted({0, *cut.tolist(), len(x)})
    return np.concatenate([one_euro(x[a:b], fps, cfg) for a, b in zip(bounds[:-1], bounds[1:]) if b > a], axis=0)


def fill_gaps(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``x [T, C]`` over invalid frames (held constant at the ends)."""
    x = np.asarray(x, dtype=np.float64).copy()
    ok = np.flatnonzero(valid)
    if len(ok) == 0 or len(ok) == len(x):
        return x
    t = np.arange(len(x))
    for c in range(x.shape[1]):
        x[:, c] = np.interp(t, ok, x[ok, c])
    return x
