"""Stage 3's peak memory against video length (issue 12): a 10-second and a 60-second 512² clip converted at
the tiny preset, each in a fresh process, peak resident set of that process (``VmHWM``: ``ru_maxrss`` of a child
carries the parent's peak over the fork, so a bench run that had grown to 2.4 GB reported 2.4 GB for every clip).

Stage 3 streams a video through ingestion, rendering and the Zarr writer ``pseudo_mv.chunk_frames`` frames at
a time, so the two peaks should match (target: the longer within 1.5× of the shorter).

The clips are the scikit-image astronaut animated (roll, scale, shift) and written as H.264 at 25 fps. The
Ψ3d and E_mot are the tiny preset's networks after two training steps on a few GenHead samples (memory does
not depend on the weights). Figures belong to the machine in the results file.
Run: ``python bench/run.py --only stage3_memory``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clips import write_astronaut_clip  # noqa: E402  (bench/clips.py)

REPO = Path(__file__).resolve().parents[2]
SIZE = 512
FPS = 25
SECONDS = (10, 60)
UPSTREAM = [
    "genhead.n_identities=8",
    "genhead.shard_size=4",
    "genhead.views_per_identity=2",
    "psi3d.steps=2",
    "psi3d.val_identities=2",
    "psi3d.batch_size=2",
    "psi3d.checkpoint_every=1",
    "analyser_samples.n_identities=4",
    "analyser_samples.expressions_per_identity=2",
    "analyser_samples.shard_size=8",
    "analyser_samples.visibility_samples=4",
    "motion_encoder.steps=2",
    "motion_encoder.val_identities=2",
    "motion_encoder.batch_size=8",
]

_UPSTREAM_CODE = """
import json, sys
from pipeline_tasks.analyser_samples import run_analyser_samples_stage
from pipeline_tasks.config import load_config
from pipeline_tasks.genhead_samples import run_genhead_stage
from pipeline_tasks.train_motion_encoder import train_motion_encoder
from pipeline_tasks.train_psi3d import train_psi3d
from storage_schemas.artifacts import ArtifactRegistry
reg = ArtifactRegistry()
cfg = load_config("tiny", json.loads(sys.argv[1]))
p3 = train_psi3d(cfg, run_genhead_stage(cfg, reg, progress=False), reg)
me = train_motion_encoder(cfg, run_analyser_samples_stage(cfg, reg, progress=False), reg)
print(json.dumps({"psi3d": p3.ref, "motion_encoder": me.ref}))
"""

_CONVERT_CODE = """
import json, re, resource, sys, time
from pathlib import Path
from pipeline_tasks import pseudo_mv
from pipeline_tasks.config import load_config
from storage_schemas.artifacts import ArtifactRegistry
def peak_mb():  # this process's own high-water mark (Linux), else ru_maxrss
    try:
        return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
refs, folder = json.loads(sys.argv[1]), sys.argv[2]
cfg = load_config("tiny", [f"pseudo_mv.videos={folder}"])
t0 = time.perf_counter()
art = pseudo_mv.convert(cfg, refs["psi3d"], refs["motion_encoder"], registry=ArtifactRegistry(), progress=False)
print(json.dumps({"frames": art.manifest["counts"]["frames"], "seconds": time.perf_counter() - t0,
                  "peak_mb": peak_mb()}))
"""


def _child(code: str, env: dict, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_stage3_peak_memory_vs_length():
    tmp = Path(tempfile.mkdtemp(prefix="p4d-bench-mem-"))
    env = {**os.environ, "P4D_HOME": str(tmp / "artifacts"), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    rows, peaks = [], {}
    try:
        refs = _child(_UPSTREAM_CODE, env, json.dumps(UPSTREAM))
        for sec in SECONDS:
            folder = tmp / f"clip{sec}s"
            folder.mkdir()
            write_astronaut_clip(folder / f"astronaut_{sec}s.mp4", sec * FPS, SIZE, FPS)
            r = _child(_CONVERT_CODE, env, json.dumps(refs), str(folder))
            peaks[sec] = r["peak_mb"]
            rows.append(
                {
                    "name": f"stage 3 peak RSS, {sec} s {SIZE}² clip → tiny (streamed)",
                    "value": round(r["peak_mb"], 1),
                    "unit": "MiB",
                    "peak_mem_mb": round(r["peak_mb"], 1),
                    "device": "cpu",
                    "note": f"{r['frames']} frames converted in {r['seconds']:.1f} s, fresh process (VmHWM)",
                }
            )
        short, long_ = SECONDS
        rows.append(
            {
                "name": f"stage 3 peak RSS ratio {long_} s / {short} s (target ≤ 1.5)",
                "value": round(peaks[long_] / peaks[short], 3),
                "unit": "×",
                "device": "cpu",
                "note": "measured in this run",
            }
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
