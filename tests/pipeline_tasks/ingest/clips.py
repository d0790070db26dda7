"""Test clips for ingestion: a real photograph (skimage astronaut) animated with known transforms, written with PyAV."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data

import models  # noqa: F401  (CPU torchvision shim first)

FACE_CENTRE = np.array([223.0, 128.0])  # roughly the astronaut's face centre in the 512² photo (pixel indices)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """H.264 yuv420p mp4 of ``frames u8 [T, H, W, 3]``."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "18"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@dataclass
class AnimatedClip:
    path: Path
    roll_degrees: np.ndarray  # [T] applied in-plane rotation (cv2 convention: counter-clockwise positive)
    matrices: np.ndarray  # [T, 2, 3] photo pixel index → frame pixel index


def animate_astronaut(path: Path, n_frames: int = 32, size: int = 256, roll: float = 12.0) -> AnimatedClip:
    """The astronaut photo under a known, smooth similarity motion: roll ±``roll``°, scale 0.9→1.1, shift ±8 px."""
    img = data.astronaut()
    frames, mats, angles = [], [], []
    for t in range(n_frames):
        u = t / (n_frames - 1)
        a = roll * np.sin(2 * np.pi * u)
        m = cv2.getRotationMatrix2D(tuple(FACE_CENTRE), a, 0.9 + 0.2 * u)
        m[:, 2] += np.array([size / 2 + 16 * (u - 0.5), size / 2 + 10 + 8 * np.sin(np.pi * u)]) - FACE_CENTRE
        frames.append(cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        mats.append(m)
        angles.append(a)
    write_mp4(path, np.stack(frames))
    return AnimatedClip(path, np.array(angles), np.stack(mats))
