"""Talking-head trajectories for synthetic monocular videos (expression, pose, gaze, camera).

Speech-like jaw and lip motion (syllables at ~3–6 Hz inside phrases with pauses), vowel shapes
(mouth wide / pucker), smiles, blinks every 2–6 s, brow raises on emphasis, an occasional frown
and cheek puff, head sway within ±30° yaw, and saccadic gaze. Smooth by construction (sums of
low-frequency sinusoids and smoothed events), deterministic given the generator.
"""

from __future__ import annotations

import math

import torch

from models import cameras as cam
from models.genhead import params as P

SMILE_EVENTS_HZ = 0.15  # smiles per second over the smile level (every benchmark trajectory uses this)


def _smooth_noise(t: torch.Tensor, g: torch.Generator, max_hz: float, n: int = 4) -> torch.Tensor:
    """Band-limited noise in about [−1, 1]: a few random sinusoids below ``max_hz``."""
    f = 0.15 + torch.rand(n, generator=g) * (max_hz - 0.15)
    ph = torch.rand(n, generator=g) * 2 * math.pi
    a = torch.rand(n, generator=g) + 0.3
    return (a[:, None] * torch.sin(2 * math.pi * f[:, None] * t[None] + ph[:, None])).sum(0) / a.sum()


def _events(
    t: torch.Tensor, g: torch.Generator, rate_hz: float, dur: tuple[float, float], shape: str = "bump"
) -> torch.Tensor:
    """Sum of smooth bumps (0→1→0) at Poisson-like times; ``dur`` = (min, max) seconds."""
    total = float(t[-1]) + 1e-6 if len(t) else 0.0
    n = int(torch.poisson(torch.tensor([rate_hz * total + 1e-9]), generator=g).item())
    out = torch.zeros_like(t)
    for _ in range(n):
        c = float(torch.rand(1, generator=g)) * total
        d = dur[0] + float(torch.rand(1, generator=g)) * (dur[1] - dur[0])
        x = ((t - c) / (d / 2)).clamp(-1, 1)
        bump = 0.5 * (1 + torch.cos(math.pi * x)) if shape == "bump" else (1 - x.abs())
        out = torch.maximum(out, bump)
    return out


def talking_trajectory(
    n_frames: int,
    fps: float,
    g: torch.Generator,
    max_yaw: float = math.radians(30),
    smile_events_hz: float = SMILE_EVENTS_HZ,
) -> dict[str, torch.Tensor]:
    """Per-frame ``expression [T,9]``, ``pose [T,3]``, ``gaze [T,2]`` of one talking identity.

    ``smile_events_hz``: how often a smile (1–2.5 s) rises over the clip's slowly varying smile level. At the
    default a 2-s clip holds its smile nearly still, as a person does; Ψ learns motion only from pairs inside one
    clip, so training videos may ask for more (``videos.smile_events_per_second``)."""
    t = torch.arange(n_frames, dtype=torch.float32) / fps
    e = torch.zeros(n_frames, len(P.EXPRESSION_NAMES))
    idx = {n: i for i, n in enumerate(P.EXPRESSION_NAMES)}
    # speech: phrases (on/off) × syllables
    phrase = (_smooth_noise(t, g, 0.4, 3) + 0.35).clamp(0, 0.25) / 0.25
    syl_hz = 2.5 + 2.0 * float(torch.rand(1, generator=g))  # syllables per second
    syl = 0.5 * (1 + torch.sin(2 * math.pi * syl_hz * t + 3 * _smooth_noise(t, g, 1.0)))
    loud = 0.5 + 0.5 * (_smooth_noise(t, g, 1.5) + 1) / 2
    e[:, idx["jaw_open"]] = (0.7 * phrase * syl**1.5 * loud).clamp(0, 1)
    vowel = _smooth_noise(t, g, 2.5)
    e[:, idx["mouth_wide"]] = (phrase * vowel * 0.8).clamp(0, 1)
    e[:, idx["lip_pucker"]] = (-phrase * vowel * 0.8).clamp(0, 1)
    smile_base = 0.25 * float(torch.rand(1, generator=g)) * (1 + _smooth_noise(t, g, 0.3)) / 2
    e[:, idx["smile"]] = (smile_base + 0.8 * _events(t, g, smile_events_hz, (1.0, 2.5))).clamp(0, 1)
    blink = _events(t, g, 0.3, (0.15, 0.3), shape="tri")
    e[:, idx["blink_left"]] = blink
    e[:, idx["blink_right"]] = blink
    e[:, idx["brow_raise"]] = (0.7 * _events(t, g, 0.25, (0.4, 1.2)) * (0.5 + 0.5 * phrase)).clamp(0, 1)
    e[:, idx["brow_furrow"]] = 0.6 * _events(t, g, 0.08, (0.8, 2.0))
    e[:, idx["cheek_puff"]] = 0.9 * _events(t, g, 0.06, (0.6, 1.2)) * (1 - phrase)
    # head sway within ±max_yaw
    yaw_amp = max_yaw * (0.3 + 0.6 * float(torch.rand(1, generator=g)))
    yaw_off = (float(torch.rand(1, generator=g)) * 2 - 1) * (max_yaw - yaw_amp)
    pose = torch.stack(
        [
            yaw_off + yaw_amp * _smooth_noise(t, g, 0.5),
            0.12 * _smooth_noise(t, g, 0.6) + 0.05 * phrase * syl,
            0.08 * _smooth_noise(t, g, 0.4),
        ],
        -1,
    )
    pose[:, 0] = pose[:, 0].clamp(-max_yaw, max_yaw)
    # gaze: fixations with quick saccades (smoothed steps)
    n_fix = max(1, int(t[-1] / 0.8) + 1) if n_frames else 1
    targets = (torch.rand(n_fix + 1, 2, generator=g) * 2 - 1) * P.GAZE_RANGE * 0.6
    pos = t / 0.8
    i0 = pos.floor().long().clamp(max=n_fix - 1)
    frac = ((pos - i0) * 6 - 5).clamp(0, 1)  # move during the last sixth of a fixation
    frac = frac * frac * (3 - 2 * frac)
    gaze = targets[i0] * (1 - frac[:, None]) + targets[i0 + 1] * frac[:, None]
    return {"expression": e, "pose": pose, "gaze": gaze}


def camera_path(
    n_frames: int, fps: float, g: torch.Generator, moving: bool = True, radius: float = cam.DEFAULT_RADIUS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame cameras ``[T,25]`` and their (yaw, pitch, radius) ``[T,3]``: fixed or a slow drift."""
    t = torch.arange(n_frames, dtype=torch.float32) / fps
    yaw0 = (float(torch.rand(1, generator=g)) * 2 - 1) * 0.15
    pitch0 = (float(torch.rand(1, generator=g)) * 2 - 1) * 0.08
    yaw = torch.full_like(t, yaw0)
    pitch = torch.full_like(t, pitch0)
    rad = torch.full_like(t, radius)
    if moving:
        yaw = yaw + 0.12 * _smooth_noise(t, g, 0.15, 2)
        pitch = pitch + 0.04 * _smooth_noise(t, g, 0.15, 2)
        rad = rad + 0.1 * _smooth_noise(t, g, 0.15, 2)
    return cam.orbit_label(yaw, pitch, rad), torch.stack([yaw, pitch, rad], -1)
