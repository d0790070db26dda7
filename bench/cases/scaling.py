"""Scaling curves (issue 15): does the cost grow linearly?

* stage 3 at the tiny preset against video length (one 512² clip of 4, 8, 16 and 32 s) and against the number of
  videos (1, 2 and 4 clips of 4 s): wall time and peak resident set of a fresh process per point;
* Ψ3d training throughput (images/s) against batch size (1, 2, 4, 8; tiny, CPU, fp32).

Writes ``bench/scaling-<host>-<date>.png`` (three panels) beside the results rows; each row's note gives the
per-frame or per-image figure, so linear cost reads as a constant there. The clips are the animated astronaut of
bench/clips.py; the networks are the tiny preset's after two training steps (cost does not depend on weights).
Run: ``python bench/run.py --only scaling``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clips import write_astronaut_clip  # noqa: E402  (bench/clips.py)
from stage3_memory import _CONVERT_CODE, _UPSTREAM_CODE, UPSTREAM, _child  # noqa: E402  (same upstream, same child)

BENCH = Path(__file__).resolve().parents[1]
SIZE, FPS = 512, 25
LENGTHS_S = (4, 8, 16, 32)
VIDEO_COUNTS = (1, 2, 4)
CLIP_S = 4
BATCHES = (1, 2, 4, 8)
_points: dict[str, list[dict]] = {}


def _linear_fit_r2(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """Slope, intercept and R² of the least-squares line (R² near 1: linear growth)."""
    import numpy as np

    a = np.vstack([x, np.ones(len(x))]).T
    (slope, icpt), *_ = np.linalg.lstsq(a, np.asarray(y), rcond=None)
    pred = slope * np.asarray(x) + icpt
    ss = float(((np.asarray(y) - np.mean(y)) ** 2).sum())
    return float(slope), float(icpt), 1.0 - float(((np.asarray(y) - pred) ** 2).sum()) / ss if ss else 1.0


def bench_stage3_scaling():
    tmp = Path(tempfile.mkdtemp(prefix="p4d-bench-scaling-"))
    env = {**os.environ, "P4D_HOME": str(tmp / "artifacts"), "PYTHONPATH": str(BENCH.parent), "HF_HUB_OFFLINE": "1"}
    rows = []
    try:
        refs = _child(_UPSTREAM_CODE, env, json.dumps(UPSTREAM))
        for label, series in (("length", LENGTHS_S), ("videos", VIDEO_COUNTS)):
            pts = []
            for x in series:
                folder = tmp / f"{label}-{x}"
                folder.mkdir()
                for i in range(1 if label == "length" else x):
                    sec = x if label == "length" else CLIP_S
                    # distinct content per clip (a repeated file is converted once): lengths differ by i frames
                    write_astronaut_clip(folder / f"clip{i}.mp4", sec * FPS + i, SIZE, FPS)
                r = _child(_CONVERT_CODE, env, json.dumps(refs), str(folder))
                pts.append({"x": x, **r})
                rows.append(
                    {
                        "name": f"stage 3 (tiny, {SIZE}² clips): "
                        + (f"one {x} s clip" if label == "length" else f"{x} clip(s) of {CLIP_S} s"),
                        "value": round(r["seconds"], 2),
                        "unit": "s",
                        "peak_mem_mb": round(r["peak_mb"], 1),
                        "device": "cpu",
                        "note": f"{r['frames']} frames, {1000 * r['seconds'] / r['frames']:.1f} ms/frame, own process",
                    }
                )
            slope, icpt, r2 = _linear_fit_r2([p["frames"] for p in pts], [p["seconds"] for p in pts])
            rows.append(
                {
                    "name": f"stage 3 time vs frames ({label} series): linear fit R²",
                    "value": round(r2, 4),
                    "unit": "R²",
                    "device": "cpu",
                    "note": f"{1000 * slope:.1f} ms per frame + {icpt:.1f} s fixed (models, ingestion set-up)",
                }
            )
            _points[label] = pts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _plot()
    return rows


def bench_training_throughput_vs_batch():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cases_profile_step", Path(__file__).with_name("profile.py"))
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)  # by path: `import profile` is the standard library's
    rows, pts = [], []
    for b in BATCHES:
        _, step = prof.psi3d_step("tiny", batch=b)
        step()  # warm-up
        n = max(3, 16 // b)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        per_step = (time.perf_counter() - t0) / n
        pts.append({"x": b, "seconds": per_step, "images_per_s": b / per_step})
        rows.append(
            {
                "name": f"Ψ3d training (tiny, CPU fp32), batch {b}",
                "value": round(b / per_step, 2),
                "unit": "images/s",
                "device": "cpu",
                "note": f"{1000 * per_step:.0f} ms/step over {n} steps, {1000 * per_step / b:.0f} ms/image",
            }
        )
    slope, icpt, r2 = _linear_fit_r2([p["x"] for p in pts], [p["seconds"] for p in pts])
    rows.append(
        {
            "name": "Ψ3d step time vs batch: linear fit R²",
            "value": round(r2, 4),
            "unit": "R²",
            "device": "cpu",
            "note": f"{1000 * slope:.0f} ms per image + {1000 * icpt:.0f} ms per step",
        }
    )
    _points["batch"] = pts
    _plot()
    return rows


def _plot() -> None:
    """The curves measured so far in this run, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("length", "videos", "batch") if k in _points]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, key in zip(axes[0], panels):
        pts = _points[key]
        if key == "batch":
            ax.plot([p["x"] for p in pts], [1000 * p["seconds"] for p in pts], "o-", label="ms per step")
            ax.set_xlabel("batch size")
            ax.set_ylabel("ms per Ψ3d step (tiny)")
            ax2 = ax.twinx()
            ax2.plot([p["x"] for p in pts], [p["images_per_s"] for p in pts], "s--", color="tab:orange")
            ax2.set_ylabel("images/s", color="tab:orange")
            ax.set_title("training throughput vs batch")
        else:
            frames = [p["frames"] for p in pts]
            ax.plot(frames, [p["seconds"] for p in pts], "o-", label="wall time (s)")
            ax.set_xlabel("frames converted" + (" (one clip)" if key == "length" else f" ({CLIP_S} s clips)"))
            ax.set_ylabel("seconds")
            ax2 = ax.twinx()
            ax2.plot(frames, [p["peak_mb"] for p in pts], "s--", color="tab:red")
            ax2.set_ylabel("peak RSS (MiB)", color="tab:red")
            ax2.set_ylim(0, max(p["peak_mb"] for p in pts) * 1.2)
            for p in pts:
                ax.annotate(
                    f"{p['x']}{' s' if key == 'length' else ' videos'}", (p["frames"], p["seconds"]), fontsize=7
                )
            ax.set_title(f"stage 3 vs {'video length' if key == 'length' else 'number of videos'}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"scaling on {socket.gethostname()}, {dt.date.today().isoformat()} (tiny preset, CPU)", fontsize=9)
    fig.tight_layout()
    fig.savefig(BENCH / f"scaling-{socket.gethostname()}-{dt.date.today().isoformat()}.png", dpi=110)
    plt.close(fig)
