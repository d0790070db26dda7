"""Where stage 3's time goes on one 512² clip at tiny (issue 15): milliseconds per frame of each phase and the
frames/s end to end, on the CPU of this run.

Phases, timed around the stage's own calls (``analyse_video``, ``iter_aligned``, ``render_pseudo_views`` and the
Zarr writer of ``storage_schemas.pseudo_mv``) with the networks' and face models' entry points wrapped by timers:
pass 1 = decode + face detection and 478-point mesh (one call of the face analyser) + cameras; pass 2 = decode and
crop + segmentation; then Ψ3d (the encoder forward), the renders (K views and the frame's own view), E_mot, the
rest of the conversion loop, and the Zarr write. Decode is what remains of each pass once its face-model calls are
taken out. The networks are the tiny preset's after two training steps (time does not depend on the weights); the
clip is bench/clips.py's animated astronaut.

Then the same clip through ``convert_videos`` itself (what a shard runs), once with its phases in sequence and once
with ingestion ahead of rendering and the Zarr write behind it (``pseudo_mv.executor.prefetch_chunks`` and
``write_behind_chunks``), and with ingestion ahead only, in chunks of ``OVERLAP_CHUNK`` frames: one process,
models loaded once, one warm-up run, then the modes alternated A B C C B A twice; frames/s of each (median of its
runs) and the ratio to the sequence. Run: ``python bench/run.py --only stage3_phases`` (~4 min).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clips import write_astronaut_clip  # noqa: E402  (bench/clips.py)
from stage3_memory import _UPSTREAM_CODE, UPSTREAM, _child  # noqa: E402  (same upstream, same child runner)

SIZE, FPS, FRAMES = 512, 25, 100

_PHASES_CODE = """
import json, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
from pipeline_tasks import pseudo_mv as pmv, stages
from pipeline_tasks.config import load_config
from pipeline_tasks.ingest import analyse_video, iter_aligned
from storage_schemas import pseudo_mv as pm
from storage_schemas.artifacts import ArtifactRegistry

refs, clip = json.loads(sys.argv[1]), Path(sys.argv[2])
reg = ArtifactRegistry()
cfg = load_config("tiny", [f"pseudo_mv.videos={clip.parent}"])
ic, dev = cfg.pseudo_mv.ingest, torch.device("cpu")
psi3d = stages.load(reg.resolve(refs["psi3d"]), model_cfg=cfg.model, device=dev)
e_mot = stages.load(reg.resolve(refs["motion_encoder"]), device=dev)
analyzer, segmenter = pmv._FaceModels(ic).get()
t = dict.fromkeys(["faces", "segmentation", "psi3d", "render", "e_mot"], 0.0)

def timed(obj, name, key):
    fn = getattr(obj, name)
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            t[key] += time.perf_counter() - t0
    setattr(obj, name, wrapper)

timed(analyzer, "faces", "faces")
timed(segmenter, "mask", "segmentation")
timed(psi3d, "forward", "psi3d")
timed(psi3d, "render", "render")
timed(e_mot, "encode", "e_mot")
t0 = time.perf_counter()
info, a = analyse_video(clip, cfg.model.psi.image_resolution, ic, None, analyzer)
t["pass1"] = time.perf_counter() - t0
pos = np.flatnonzero(a.usable)
t0 = time.perf_counter()
chunks = list(iter_aligned(info, a, ic, segmenter, pos, cfg.pseudo_mv.chunk_frames))
t["pass2"] = time.perf_counter() - t0
arrays, t0 = [], time.perf_counter()
for rows, frames, alpha in chunks:
    arrays.append(pmv.render_pseudo_views(psi3d, e_mot, "v", frames, a.cameras[pos][rows], a.frame_indices[pos][rows],
                  cfg.pseudo_mv.views_per_frame, 0, cfg.pseudo_mv.frame_batch, dev, alpha))
t["convert"] = time.perf_counter() - t0
store = Path(tempfile.mkdtemp()) / "s.zarr"
pm.create(store)
t0 = time.perf_counter()
res = cfg.model.psi.image_resolution
g = pm.begin_video(store, "v", {"height": res, "width": res, "motion": arrays[0]["frame_motion"].shape[1],
                   "view": cfg.pseudo_mv.views_per_frame}, {"source_file": clip.name, "source_hash": info.sha256,
                   "fps": FPS, "crop": None, "camera_source": "estimated", "quality_flags": {}})
for arr in arrays:
    pm.append_frames(g, arr)
pm.finish_video(g)
t["write"] = time.perf_counter() - t0
print(json.dumps({"frames": int(len(pos)), **t}))
""".replace("FPS", str(FPS))


# (name, prefetch_chunks, write_behind_chunks)
# chunks of 16 frames: a 100-frame clip is 7 chunks, closer to a long video's steady state than the default 64's 2
OVERLAP_CHUNK = 16
MODES = [("in sequence", 0, 0), ("ingestion ahead", 1, 0), ("ingestion ahead + write behind", 1, 1)]

_OVERLAP_CODE = """
import json, sys, tempfile, time
from pathlib import Path
from pipeline_tasks import pseudo_mv as pmv
from pipeline_tasks.config import load_config
from storage_schemas import pseudo_mv as pm
from storage_schemas.artifacts import ArtifactRegistry

refs, clip, modes = json.loads(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
reg = ArtifactRegistry()
p3, me = reg.resolve(refs["psi3d"]), reg.resolve(refs["motion_encoder"])
video = pmv.VideoInput(video_id="v", path=str(clip))
times = {m[0]: [] for m in modes}
for i, (name, ahead, behind) in enumerate([modes[-1]] + (modes + modes[::-1]) * 2):
    cfg = load_config("tiny", [f"pseudo_mv.videos={clip.parent}", f"pseudo_mv.executor.prefetch_chunks={ahead}",
                               f"pseudo_mv.executor.write_behind_chunks={behind}", f"pseudo_mv.chunk_frames={CHUNK}"])
    store = Path(tempfile.mkdtemp()) / "s.zarr"
    pm.create(store)
    t0 = time.perf_counter()
    stats = pmv.convert_videos(cfg, [video], store, p3, me, cache_dir=None, progress=False, raise_failures=True)
    if i:  # the first run warms caches and allocators up, and is not counted
        times[name].append(time.perf_counter() - t0)
print(json.dumps({"frames": stats.frames, "seconds": times}))
""".replace("CHUNK", str(OVERLAP_CHUNK))


def overlap_rows(r: dict) -> list[dict]:
    """frames/s per executor mode (median of its runs) and its ratio to the phases in sequence."""
    fps = {name: r["frames"] / statistics.median(secs) for name, secs in r["seconds"].items()}
    base = fps[MODES[0][0]]
    return [
        {
            "name": f"stage 3 (tiny, one {SIZE}² clip) through convert_videos: {name}",
            "value": round(v, 2),
            "unit": "frames/s",
            "device": "cpu",
            "note": f"{v / base:.2f}× the phases in sequence; prefetch_chunks={a}, write_behind_chunks={b}; "
            f"runs {', '.join(f'{s:.1f}' for s in r['seconds'][name])} s for {r['frames']} frames (models loaded "
            f"once, pass 1 not cached, chunks of {OVERLAP_CHUNK} frames)",
        }
        for (name, a, b), v in zip(MODES, fps.values())
    ]


def phases_ms_per_frame(r: dict) -> dict[str, float]:
    """The measured seconds split into the named phases, in milliseconds per converted frame."""
    n = r["frames"]
    parts = {
        "pass 1: decode (+ cameras)": r["pass1"] - r["faces"],
        "pass 1: face detection + 478-point mesh": r["faces"],
        "pass 2: decode + crop": r["pass2"] - r["segmentation"],
        "pass 2: segmentation": r["segmentation"],
        "Ψ3d encoder": r["psi3d"],
        "renders (K views; the frame's own too without segmentation)": r["render"],
        "E_mot": r["e_mot"],
        "conversion loop, rest": r["convert"] - r["psi3d"] - r["render"] - r["e_mot"],
        "Zarr write": r["write"],
    }
    return {k: 1000 * v / n for k, v in parts.items()}


def bench_stage3_phases():
    tmp = Path(tempfile.mkdtemp(prefix="p4d-bench-phases-"))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "P4D_HOME": str(tmp / "artifacts"), "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1"}
    try:
        refs = _child(_UPSTREAM_CODE, env, json.dumps(UPSTREAM))
        clip = tmp / "clip" / "astronaut.mp4"
        clip.parent.mkdir()
        write_astronaut_clip(clip, FRAMES, SIZE, FPS)
        r = _child(_PHASES_CODE, env, json.dumps(refs), str(clip))
        overlap = _child(_OVERLAP_CODE, env, json.dumps(refs), str(clip), json.dumps(MODES))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ms = phases_ms_per_frame(r)
    total = sum(ms.values())
    rows = [
        {
            "name": f"stage 3 (tiny, one {SIZE}² clip): {phase}",
            "value": round(v, 2),
            "unit": "ms/frame",
            "device": "cpu",
            "note": f"{100 * v / total:.0f}% of the frame's time",
        }
        for phase, v in ms.items()
    ]
    rows.append(
        {
            "name": f"stage 3 (tiny, one {SIZE}² clip): end to end",
            "value": round(1000 / total, 2),
            "unit": "frames/s",
            "device": "cpu",
            "note": f"{r['frames']} frames, {total:.1f} ms/frame, phases in sequence (target 25 frames/s)",
        }
    )
    return rows + overlap_rows(overlap)
