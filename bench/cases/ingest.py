"""Real-video ingestion throughput on CPU (issue 6): decode → faces → crop → camera → mask.

The clip is the scikit-image astronaut photo animated (bench/clips.py) and written as H.264;
timings are for the machine named in the results file, never assertions.
Run: ``python bench/run.py --only ingest``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clips import write_astronaut_clip  # noqa: E402  (bench/clips.py)


def _run(source_size: int, resolution: int, n_frames: int, segmentation: bool) -> dict:
    from pipeline_tasks.ingest import IngestConfig, ingest_video

    with tempfile.TemporaryDirectory() as d:
        path = write_astronaut_clip(Path(d) / "clip.mp4", n_frames, source_size)
        t0 = time.perf_counter()
        res = ingest_video(path, resolution, IngestConfig(segmentation=segmentation))
        wall = time.perf_counter() - t0
    inner = res.quality["seconds"]
    return {
        "name": f"ingest frames/s ({source_size}² H.264 → {resolution}² crops, "
        f"{'mask' if segmentation else 'no mask'}, mediapipe)",
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
