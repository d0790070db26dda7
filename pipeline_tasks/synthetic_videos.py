"""Synthetic monocular talking-head videos: the default input of stage 3 (artifact ``synthetic_videos``).

Video i shows identity ``identity_ids(videos.seed, n_videos)[i]`` (disjoint from stage 1's ids:
different base seed) talking for ``n_frames`` frames: smooth speech-like expression trajectories,
head sway within ±``max_yaw_degrees``, and a fixed or slowly drifting camera
(``models.genhead.motion``). Frames are written as H.264 mp4 (PyAV, yuv420p, ``crf``), a JSON
sidecar holds the ground truth per frame, and an ``.npz`` beside it the generator's alpha and
depth per frame (what stage 3 stores as the frame alpha, ``alpha_source: ground_truth``).

Cameras in the sidecar are **head-relative** (DESIGN.md §2): the head sways in the world, but
``cameras[t]`` = T(γ_t)⁻¹·c_t, so rendering pose 0 at ``cameras[t]`` gives frame t. The world
camera path is kept as ``world_cameras``; γ stays a label (``pose``).

Artifact layout (``<root>/synthetic_videos/<version>/``)::

    videos/video_0000.mp4       H.264, n_frames × resolution², fps
    videos/video_0000.json      sidecar (SIDECAR_FORMAT, see ``render_video``)
    videos/video_0000.npz       alpha [T,H,W] u8, depth [T,H,W] f16 of the generator
    index.json                  [{name, identity, n_frames, fps, width, height, mp4, sidecar}]
    previews/frames.png         every video's frames 0, T/4, T/2, 3T/4, T−1

Version config: ``cfg.stage_config("videos")`` + ``resolution`` + the generator's ``config()``.
Resumable per video: a video counts as done when its sidecar exists (written after the mp4).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from tqdm.auto import tqdm

from models.genhead import params as P
from models.genhead.ground_truth import head_relative_cameras, identity_from_seed, identity_ids
from models.genhead.motion import SMILE_EVENTS_HZ, camera_path, talking_trajectory
from models.genhead.procedural import ProceduralGenHead
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.previews import grid, to_uint8
from pipeline_tasks.data.video_sidecars import INDEX, SIDECAR_FORMAT, list_videos
from pipeline_tasks.stage import StageSpec, run_once
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "synthetic_videos"
SCHEMA_VERSION = 2  # v2: head-relative cameras, ground-truth alpha/depth files


def stage_resolution(cfg: PipelineConfig) -> int:
    return int(cfg.videos.resolution or cfg.model.psi.image_resolution)


def artifact_config(cfg: PipelineConfig) -> dict[str, Any]:
    gen = ProceduralGenHead(sharpness=cfg.genhead.sharpness)
    return {**cfg.stage_config("videos"), "resolution": stage_resolution(cfg), "generator": gen.config()}


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int = 18) -> None:
    """Write ``frames [T,H,W,3]`` uint8 as H.264 (yuv420p); atomic (temp file, then rename)."""
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {w}×{h}")
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def render_video(
    gen: ProceduralGenHead,
    identity: int,
    n_frames: int,
    fps: int,
    resolution: int,
    moving_camera: bool = True,
    max_yaw_degrees: float = 30.0,
    batch: int = 16,
    smile_events_hz: float = SMILE_EVENTS_HZ,
) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """Frames ``[T,H,W,3]`` uint8, the sidecar dict and the ground-truth maps of one talking identity.

    Sidecar: ``format``, ``identity``, ``fps``, ``n_frames``, ``width``, ``height``,
    ``camera_source`` ("ground_truth"), ``cameras [T][25]`` (head-relative models.cameras labels),
    ``world_cameras [T][25]`` and their ``camera_yaw_pitch_radius [T][3]``, ``expression [T][9]``,
    ``pose [T][3]``, ``gaze [T][2]``, ``shape [16]``, ``z [24]``, ``parameter_names``.
    Maps: ``alpha [T,H,W]`` uint8 and ``depth [T,H,W]`` float16.
    """
    ident = identity_from_seed(identity)
    g = torch.Generator().manual_seed((int(identity) * 2654435761 + 97) % (2**62))  # not any identity's seed
    traj = talking_trajectory(
        n_frames, fps, g, max_yaw=float(np.radians(max_yaw_degrees)), smile_events_hz=smile_events_hz
    )
    cams, ypr = camera_path(n_frames, fps, g, moving=moving_camera)
    frames, alpha, depth = [], [], []
    for s in range(0, n_frames, batch):
        sl = slice(s, min(s + batch, n_frames))
        m = sl.stop - sl.start
        out = gen.render(
            ident.shape[None].expand(m, -1),
            traj["expression"][sl],
            traj["pose"][sl],
            traj["gaze"][sl],
            ident.z[None].expand(m, -1),
            cams[sl],
            resolution,
        )
        frames.append(to_uint8(out.rgb))
        alpha.append((out.alpha[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy())
        depth.append(out.depth[:, 0].numpy().astype(np.float16))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "identity": int(identity),
        "fps": int(fps),
        "n_frames": int(n_frames),
        "width": int(resolution),
        "height": int(resolution),
        "camera_source": "ground_truth",
        "camera_convention": "models.cameras 25-vector: cam2world 4x4 row-major + normalised K 3x3 (DESIGN.md §6)",
        "cameras": head_relative_cameras(cams, traj["pose"]).tolist(),
        "world_cameras": cams.tolist(),
        "camera_yaw_pitch_radius": ypr.tolist(),
        "expression": traj["expression"].tolist(),
        "pose": traj["pose"].tolist(),
        "gaze": traj["gaze"].tolist(),
        "shape": ident.shape.tolist(),
        "z": ident.z.tolist(),
        "parameter_names": P.parameter_names(),
    }
    return np.concatenate(frames), sidecar, {"alpha": np.concatenate(alpha), "depth": np.concatenate(depth)}


def write_videos(cfg: PipelineConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Render every video not yet present under ``out_dir``; returns counts and throughput."""
    v = cfg.videos
    res = stage_resolution(cfg)
    if res % 2:  # H.264 in yuv420p stores chroma at half size
        raise ValueError(f"videos.resolution must be even (H.264, yuv420p), got {res}")
    gen = ProceduralGenHead(sharpness=cfg.genhead.sharpness)
    vdir = out_dir / "videos"
    vdir.mkdir(parents=True, exist_ok=True)
    ids = identity_ids(v.seed, v.n_videos)
    index, strips, frames_done, t0 = [], [], 0, time.time()
    for i, identity in enumerate(tqdm(ids, desc="synthetic videos", unit="video", disable=not progress)):
        name = f"video_{i:04d}"
        mp4, side, maps = vdir / f"{name}.mp4", vdir / f"{name}.json", vdir / f"{name}.npz"
        if side.exists() and mp4.exists() and maps.exists():
            frames = None
        else:
            frames, sidecar, gt_maps = render_video(
                gen,
                identity,
                v.n_frames,
                v.fps,
                res,
                v.camera_motion,
                v.max_yaw_degrees,
                smile_events_hz=v.smile_events_per_second,
            )
            write_mp4(mp4, frames, v.fps, v.crf)
            with open(maps.with_name(maps.name + ".part"), "wb") as fh:
                np.savez_compressed(fh, **gt_maps)
            os.replace(maps.with_name(maps.name + ".part"), maps)
            sidecar["mp4"] = mp4.name
            sidecar["maps"] = maps.name
            tmp = side.with_name(side.name + ".part")
            tmp.write_text(json.dumps(sidecar))
            os.replace(tmp, side)
            frames_done += v.n_frames
        index.append(
            {
                "name": name,
                "identity": identity,
                "n_frames": v.n_frames,
                "fps": v.fps,
                "width": res,
                "height": res,
                "mp4": f"videos/{mp4.name}",
                "sidecar": f"videos/{side.name}",
            }
        )
        if frames is not None:
            pick = np.linspace(0, v.n_frames - 1, 5).round().astype(int)
            strips.append(frames[pick])
    (out_dir / INDEX).write_text(json.dumps(index, indent=1))
    if strips:
        (out_dir / "previews").mkdir(exist_ok=True)
        grid(np.stack(strips), pad=1).save(out_dir / "previews" / "frames.png")
    seconds = time.time() - t0
    return {
        "videos": len(ids),
        "frames": len(ids) * v.n_frames,
        "rendered_frames": frames_done,
        "seconds": round(seconds, 2),
        "frames_per_s": round(frames_done / seconds, 2) if frames_done else None,
        "resolution": res,
    }


def run_videos_stage(cfg: PipelineConfig, registry: ArtifactRegistry | None = None, progress: bool = True) -> Artifact:
    """The complete ``synthetic_videos`` artifact for ``cfg`` (built if needed), without Prefect."""
    registry = registry or ArtifactRegistry()

    def build(w: ArtifactWriter) -> None:
        stats = write_videos(cfg, w.path, progress)
        w.counts.update({"videos": stats["videos"], "frames": stats["frames"]})
        w.metrics.update({"frames_per_s": stats["frames_per_s"], "render_seconds": stats["seconds"]})
        w.extra.update({"resolution": stats["resolution"], "index": INDEX, "sidecar_format": SIDECAR_FORMAT})

    return run_once(registry, KIND, artifact_config(cfg), [], SCHEMA_VERSION, build)


def summary_markdown(art: Artifact) -> str:
    c, m = art.manifest.get("counts", {}), art.manifest.get("metrics", {})
    return (
        f"## synthetic_videos `{art.ref}`\n\n| videos | frames | frames/s |\n|---|---|---|\n"
        f"| {c.get('videos')} | {c.get('frames')} | {m.get('frames_per_s')} |\n"
    )


SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=("videos",),
    parents=(),
    build=run_videos_stage,
    config=artifact_config,
    load=list_videos,
    summary=summary_markdown,
)
synthetic_videos_task = SPEC.task()
