"""Real-video ingestion throughput on CPU (issue 6): decode → faces → crop → camera → mask.

The clip is the scikit-image astronaut photo animated (roll, scale, shift) and written as H.264;
timings are for the machine named in the results file, never assertions.
Run: ``python bench/run.py --only ingest``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def _clip(path: Path, n_frames: int, size: int) -> Path:
    import av
    import cv2
    from skimage import data

    img = data.astronaut()
    centre = np.array([223.0, 128.0])
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for t in range(n_frames):
            u = t / max(n_frames - 1, 1)
            m = cv2.getRotationMatrix2D(tuple(centre), 10 * np.sin(2 * np.pi * u), size / 256 * (0.9 + 0.2 * u))
            m[:, 2] += np.array([size / 2, size / 2]) - centre
            frame = cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _run(source_size: int, resolution: int, n_frames: int, segmentation: bool) -> dict:
    from pipeline_tasks.ingest import IngestConfig, ingest_video

    with tempfile.TemporaryDirectory() as d:
        path = _clip(Path(d) / "clip.mp4", n_frames, source_size)
        t0 = time.perf_counter()
        res = ingest_video(path, resolution, IngestConfig(segmentation=segmentation))
        wall = time.perf_counter() - t0
    inner = res.quality["seconds"]
    return {
        "name": f"ingest frames/s ({source_size}² H.264 → {resolution}² crops, {'mask' if segmentation else 'no mask'}, mediapipe)",
        "value": round(n_frames / inner, 2),
        "unit": "frames/s",
        "device": "cpu",
        "note": f"{n_frames} frames; {n_frames / wall:.1f} frames/s including backend start-up ({wall:.2f} s); "
        f"usable {res.quality['n_usable']}/{n_frames}",
    }


def bench_ingest_cpu() -> list[dict]:
    return [
        _run(256, 256, 48, segmentation=True),
        _run(512, 256, 48, segmentation=True),
        _run(256, 256, 48, segmentation=False),
    ]
