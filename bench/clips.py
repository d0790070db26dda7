"""The benchmarks' test clip: the scikit-image astronaut under a smooth periodic similarity motion (roll ±10°,
zoom ±10 %, period 4 s), written as H.264 yuv420p frame by frame (memory does not grow with its length)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_astronaut_clip(path: Path, n_frames: int, size: int, fps: int = 25, preset: str = "veryfast") -> Path:
    import av
    import cv2
    from skimage import data

    img = data.astronaut()
    centre = np.array([223.0, 128.0])  # the face centre in the 512² photo
    period = 4 * fps
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"preset": preset}
        for t in range(n_frames):
            u = (t % period) / period
            m = cv2.getRotationMatrix2D(
                tuple(centre), 10 * np.sin(2 * np.pi * u), size / 256 * (0.9 + 0.1 * np.sin(2 * np.pi * u))
            )
            m[:, 2] += np.array([size / 2, size / 2]) - centre
            frame = cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
