"""Stage 3: monocular videos → pseudo multi-view Zarr groups (DESIGN.md §1, §5).

For each video: decode (PyAV) → frames and cameras (the sidecar's ground truth for synthetic
videos; ingestion's estimates for user videos) → Ψ3d on batches of frames → one tri-plane per
frame → K views per frame at cameras sampled from the training ranges (seeded per video and
frame) in one batched render → E_mot on frames and views → one Zarr group per video. A video
streams through this in chunks of ``chunk_frames`` frames (read, align, render, append), so
memory does not grow with its length; ``ingest.max_frames`` bounds the frames kept per video.

Runs under ``torch.inference_mode`` (bf16 autocast on a GPU). Resumable per video: a finished
group is never redone. A video that cannot be used is recorded in the root index with its reason
and the others still convert. ``convert`` takes a ``map_shards`` callable so the Prefect flow
can run one task per shard of videos; by default shards run here, one after the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.cameras import CameraRanges, sample_cameras
from models.psi.network import Psi
from pipeline_tasks import stages
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.images import to_model_images
from pipeline_tasks.data.overlap import WriteBehind, prefetched
from pipeline_tasks.data.video_sidecars import list_videos, read_ground_truth_maps, read_sidecar
from pipeline_tasks.eval.pseudo_view_check import pseudo_view_fidelity
from pipeline_tasks.face import make_segmenter
from pipeline_tasks.ingest import IngestionError, analyse_video, expand_video_inputs, iter_aligned, make_analyzer
from pipeline_tasks.ingest.decode import file_hash, iter_batches, probe, select_frames
from pipeline_tasks.run_progress import RunProgress
from pipeline_tasks.stage import StageSpec, run_once, stage_task, transient_failure
from pipeline_tasks.training.device import dask_worker_index, worker_device
from storage_schemas import pseudo_mv as pm
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "pseudo_mv"
SCHEMA_VERSION = pm.SCHEMA_VERSION
STORE = "store.zarr"
CONTACT_SHEET = "previews/views.png"


@dataclass
class VideoInput:
    """One video to convert: a synthetic one (mp4 + ground-truth sidecar) or a user's file."""

    video_id: str
    path: str
    sidecar: str | None = None
    sha256: str | None = None
    also_at: tuple[str, ...] = ()  # other paths of the same content (converted once, all listed in the index)

    @property
    def synthetic(self) -> bool:
        return self.sidecar is not None


@dataclass
class ConversionStats:
    frames: int = 0
    views: int = 0
    seconds: float = 0.0
    converted: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    worker: str = ""  # host:pid (and Dask worker) that converted the shard: provenance, not part of the store
    device: str = ""


def user_video_inputs(spec: str) -> list[VideoInput]:
    """User videos from a folder or glob; ids are the file stem plus a short content hash.

    One content is one video: a byte-identical file found again (another folder, another name) is
    not converted twice; its paths are kept in ``also_at`` for the index. Distinct content never
    shares an id (the hash is part of it)."""
    by_digest: dict[str, VideoInput] = {}
    for p in expand_video_inputs(spec):
        digest = file_hash(p) if p.is_file() and p.stat().st_size else hashlib.sha256(str(p).encode()).hexdigest()
        first = by_digest.get(digest)
        if first is None:
            by_digest[digest] = VideoInput(f"{p.stem}-{digest[:8]}", str(p), None, digest)
        else:
            by_digest[digest] = dataclasses.replace(first, also_at=(*first.also_at, str(p)))
    return list(by_digest.values())


def synthetic_video_inputs(art: Artifact) -> list[VideoInput]:
    return [VideoInput(r["name"], r["mp4"], r["sidecar"]) for r in list_videos(art)]


def stage_config(cfg: PipelineConfig, inputs: Sequence[VideoInput]) -> dict[str, Any]:
    """Versioned inputs: the pseudo_mv section, the image size, and (user videos) their content hashes."""
    conf = {**cfg.stage_config("pseudo_mv"), "resolution": cfg.model.psi.image_resolution}
    conf["pseudo_mv"].pop("executor", None)  # where shards run does not change what they write
    user = [(v.video_id, v.sha256) for v in inputs if not v.synthetic]
    if user:
        conf["user_videos"] = user
    return conf


def view_cameras(video_id: str, frame_indices: np.ndarray, k: int, seed: int) -> torch.Tensor:
    """K training-range cameras per frame, ``[T, K, 25]``, seeded by (seed, video, frame)."""
    base = int(hashlib.sha256(f"{seed}:{video_id}".encode()).hexdigest()[:12], 16)
    cams = [
        sample_cameras(k, torch.Generator().manual_seed(base + int(f) * 7919), CameraRanges())[0] for f in frame_indices
    ]
    return torch.stack(cams)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to_u8_images(x: torch.Tensor) -> np.ndarray:
    """[..., 3, H, W] in [−1, 1] → uint8 [..., H, W, 3]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def _to_u8_alpha(a: torch.Tensor, size: int) -> np.ndarray:
    """[N, 1, h, w] in [0, 1] → uint8 [N, size, size]."""
    if a.shape[-1] != size:
        a = F.interpolate(a.float(), size=(size, size), mode="bilinear", align_corners=False)
    return (a.float().clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].cpu().numpy()


@torch.inference_mode()
def render_pseudo_views(
    psi3d: Psi,
    e_mot,
    video_id: str,
    frames: np.ndarray,
    frame_cameras: np.ndarray,
    frame_indices: np.ndarray,
    k: int,
    seed: int,
    batch: int,
    device: torch.device,
    frame_alpha: np.ndarray | None = None,
    progress: tqdm | None = None,
) -> dict[str, np.ndarray]:
    """All arrays of one pseudo_mv video group. Without ``frame_alpha`` the frame's alpha is Ψ3d's
    render at the frame's own camera."""
    t, res = len(frames), frames.shape[1]
    cams_k = view_cameras(video_id, frame_indices, k, seed)
    out: dict[str, list[np.ndarray]] = {n: [] for n in ("views", "view_alpha", "frame_motion", "view_motion", "alpha")}
    for s in range(0, t, batch):
        sl = slice(s, min(s + batch, t))
        b = sl.stop - sl.start
        src = to_model_images(frames[sl]).to(device)
        cams = cams_k[sl].to(device)
        with _autocast(device):
            planes = psi3d(src)
            # the K novel views, and the frame's own camera where its alpha is not given (segmentation off), in one
            # batched render of each tri-plane
            if frame_alpha is None:
                own = torch.from_numpy(frame_cameras[sl]).float().to(device)[:, None]
                cams = torch.cat([cams, own], dim=1)
            r = psi3d.render(planes, cams, perturb=False)
            views = r["image"][:, :k].float().clamp(-1, 1)
            m_frames = e_mot.encode(src)
            m_views = e_mot.encode(views.reshape(b * k, *views.shape[2:])).reshape(b, k, -1)
        out["views"].append(_to_u8_images(views))
        out["view_alpha"].append(
            _to_u8_alpha(r["alpha"][:, :k].reshape(b * k, *r["alpha"].shape[2:]), res).reshape(b, k, res, res)
        )
        if frame_alpha is None:
            out["alpha"].append(_to_u8_alpha(r["alpha"][:, k], res))
        out["frame_motion"].append(m_frames.float().cpu().numpy())
        out["view_motion"].append(m_views.float().cpu().numpy())
        if progress is not None:
            progress.update(b)
    arrays = {n: np.concatenate(v) for n, v in out.items() if v}
    if frame_alpha is not None:
        arrays["alpha"] = frame_alpha
    arrays.update(
        frames=frames, frame_cameras=frame_cameras.astype(np.float32), view_cameras=cams_k.numpy().astype(np.float32)
    )
    return arrays


@dataclass
class VideoStream:
    """One video as stage 3 reads it: per output frame its source index and camera, the group's attributes, and
    ``chunks`` yielding ``(rows, frames u8 [b,R,R,3], alpha u8 [b,R,R])`` in order, a bounded number at a time."""

    frame_indices: np.ndarray
    cameras: np.ndarray
    attrs: dict[str, Any]
    chunks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]
    extra: dict[str, Any] = field(default_factory=dict)  # for the index entry (damaged frames, subsampling)


def _synthetic_stream(v: VideoInput, cfg: PipelineConfig, chunk: int) -> VideoStream:
    """A synthetic video: the sidecar's head-relative cameras and the generator's alpha; every frame must decode."""
    side = read_sidecar(v.sidecar)
    info = probe(v.path)
    ic = cfg.pseudo_mv.ingest
    idx, fps = select_frames(info, ic.target_fps, ic.frame_stride, ic.max_frames)
    cams = np.asarray(side["cameras"], dtype=np.float32)
    if len(cams) != info.n_source_frames:
        raise IngestionError(
            Path(v.path), f"sidecar {v.sidecar} has {len(cams)} cameras for {info.n_source_frames} frames"
        )
    res = cfg.model.psi.image_resolution
    if (info.height, info.width) != (res, res):
        raise IngestionError(
            Path(v.path), f"frames are {info.width}x{info.height}, preset {cfg.preset!r} needs {res}x{res}"
        )
    try:
        alpha = read_ground_truth_maps(v.sidecar, side)["alpha"]
    except (OSError, KeyError, ValueError) as exc:
        raise IngestionError(Path(v.path), f"ground-truth alpha of {v.sidecar} unreadable: {exc}") from exc
    attrs = {
        "source_file": str(v.path),
        "source_hash": info.sha256,
        "fps": fps,
        "crop": None,
        "camera_source": "ground_truth",
        "quality_flags": {},
        "alpha_source": "ground_truth",
        "sidecar": str(v.sidecar),
        "identity": side.get("identity"),
    }

    def chunks():
        done = 0
        for rows, frames in iter_batches(v.path, idx, chunk, info.codec, info):
            if rows[0] != done:  # the ground truth is per source frame: every one must decode
                break
            done = int(rows[-1]) + 1
            yield rows, frames, alpha[idx[rows]]
        if done != len(idx):
            raise IngestionError(
                Path(v.path), f"frame {int(idx[done])} cannot be decoded (a synthetic video needs every frame)"
            )

    return VideoStream(idx, cams[idx], attrs, chunks())


class _FaceModels:
    """The face analyser and segmenter, shared by a shard's user videos; rebuilt after a fault mid-call."""

    def __init__(self, cfg):
        self.cfg, self.analyzer, self.segmenter = cfg, None, None

    def get(self):
        if self.analyzer is None:
            self.analyzer = make_analyzer(self.cfg)
            self.segmenter = make_segmenter(self.cfg.segmentation_model) if self.cfg.segmentation else None
        return self.analyzer, self.segmenter

    def close(self):
        for m in (self.analyzer, self.segmenter):
            if m is not None:
                m.close()
        self.analyzer = self.segmenter = None


def _user_stream(
    v: VideoInput, cfg: PipelineConfig, chunk: int, models: _FaceModels, cache_dir: Path | None
) -> VideoStream:
    """A user's video: pass 1 (faces, flags, cameras; cached) now, pass 2 (aligned crops, masks) as chunks of its
    usable frames."""
    ic = cfg.pseudo_mv.ingest
    analyzer, segmenter = models.get()
    info, a = analyse_video(v.path, cfg.model.psi.image_resolution, ic, cache_dir, analyzer)
    pos = np.flatnonzero(a.usable)
    attrs = {
        **a.attrs(),
        "source_file": str(v.path),
        "crop": a.crop[pos].tolist(),
        "quality_flags": a.flags[pos].tolist(),
        "alpha_source": "segmentation" if ic.segmentation else "none",
    }
    extra = {k: a.quality[k] for k in ("damaged_frames", "max_frames_stride") if a.quality.get(k, 0) not in (0, 1)}
    return VideoStream(
        a.frame_indices[pos], a.cameras[pos], attrs, iter_aligned(info, a, ic, segmenter, pos, chunk), extra
    )


def _convert_one(
    v: VideoInput,
    stream: VideoStream,
    store_path: Path,
    psi3d,
    e_mot,
    cfg: PipelineConfig,
    device: torch.device,
    bar: tqdm,
) -> int:
    """Render and write one video chunk by chunk; returns its frame count.

    Three phases overlap: the next chunk is decoded, aligned and segmented in one thread and the previous one
    written in another while this one renders (bounded: ``executor.prefetch_chunks``/``write_behind_chunks``
    chunks each). Any exit waits for the writer, so a failed video's partial group is discarded after its last
    write, and ``finish_video`` marks a group complete only after every chunk is in."""
    c = cfg.pseudo_mv
    group = None
    with (
        contextlib.closing(prefetched(stream.chunks, c.executor.prefetch_chunks)) as chunks,
        WriteBehind(lambda job: pm.append_frames(*job), c.executor.write_behind_chunks) as writer,
    ):
        for rows, frames, alpha in chunks:
            arrays = render_pseudo_views(
                psi3d,
                e_mot,
                v.video_id,
                frames,
                stream.cameras[rows],
                stream.frame_indices[rows],
                c.views_per_frame,
                c.seed,
                c.frame_batch,
                device,
                alpha,
                bar,
            )
            if group is None:
                sizes = {
                    "height": frames.shape[1],
                    "width": frames.shape[2],
                    "motion": arrays["frame_motion"].shape[1],
                    "view": c.views_per_frame,
                }
                group = pm.begin_video(store_path, v.video_id, sizes, stream.attrs, shard_frames=c.shard_frames)
            writer.put((group, arrays))
    if group is None:
        raise IngestionError(Path(v.path), "no frame to convert")
    return pm.finish_video(group, {"frame_indices": [int(i) for i in stream.frame_indices]})


def convert_videos(
    cfg: PipelineConfig,
    inputs: Sequence[VideoInput],
    store_path: Path,
    psi3d_art: Artifact,
    motion_art: Artifact,
    cache_dir: Path | None = None,
    progress: bool = True,
    raise_failures: bool = False,
) -> ConversionStats:
    """Convert ``inputs`` into ``store_path`` (one group each), skipping finished ones. One shard's work.

    Streams: each video is read, ingested, rendered and written ``pseudo_mv.chunk_frames`` frames at a time,
    so memory does not grow with a video's length. A video that fails while converting (not bad input) is
    recorded as ``failed``; with ``raise_failures`` the shard raises :class:`ShardFailed` after its other videos
    instead, so that a retry (which skips the finished ones) can redo it."""
    c = cfg.pseudo_mv
    device = worker_device(cfg.device)
    done = set(pm.completed_videos(store_path))
    todo = [v for v in inputs if v.video_id not in done]
    index = dask_worker_index()
    stats = ConversionStats(
        worker=f"{socket.gethostname()}:{os.getpid()}" + (f" dask-{index}" if index is not None else ""),
        device=str(device),
    )
    if not todo:
        return stats
    psi3d = stages.load(psi3d_art, model_cfg=cfg.model, device=device)
    e_mot = stages.load(motion_art, device=device)
    models = _FaceModels(c.ingest)
    bar = tqdm(desc="pseudo_mv frames", unit="frame", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        for v in todo:
            step = "decode" if v.synthetic else "ingest"
            try:  # one video's failure, whatever it is, is recorded with its file and step; the others convert
                with pm.video_claim(store_path, v.video_id):
                    if pm.is_complete(store_path, v.video_id):  # written meanwhile by another run of this shard
                        continue
                    stream = (
                        _synthetic_stream(v, cfg, c.chunk_frames)
                        if v.synthetic
                        else _user_stream(v, cfg, c.chunk_frames, models, cache_dir)
                    )
                    step = "render"
                    n = _convert_one(v, stream, store_path, psi3d, e_mot, cfg, device, bar)
            except IngestionError as exc:  # bad input (VideoSkipped included): not usable, say why
                pm.discard_incomplete(store_path, v.video_id)
                stats.skipped.append(
                    {
                        "video_id": v.video_id,
                        "source_file": v.path,
                        "frames": 0,
                        "status": "skipped",
                        "step": step,
                        "reason": str(exc),
                    }
                )
                continue
            except Exception as exc:  # noqa: BLE001 — e.g. out of memory, a codec, detector or disk error: this video only
                pm.discard_incomplete(store_path, v.video_id)
                if step == "ingest":
                    models.close()  # a model that failed mid-call is not trusted with the next video
                stats.skipped.append(
                    {
                        "video_id": v.video_id,
                        "source_file": v.path,
                        "frames": 0,
                        "status": "failed",
                        "step": step,
                        "reason": f"{v.path}: {step} failed: {type(exc).__name__}: {exc}",
                    }
                )
                continue
            stats.frames += n
            stats.views += n * c.views_per_frame
            stats.converted.append(
                {"video_id": v.video_id, "source_file": v.path, "frames": int(n), "status": "converted", **stream.extra}
            )
    finally:
        models.close()
        bar.close()
    stats.seconds = time.perf_counter() - t0
    failed = [e for e in stats.skipped if e["status"] == "failed"]
    if raise_failures and failed:
        raise ShardFailed(failed)
    return stats


class ShardFailed(RuntimeError):
    """Videos of a shard failed while converting; the others are written. Raised for a retry to redo them."""

    def __init__(self, failed: list[dict[str, Any]]):
        self.failed = failed
        super().__init__(f"{len(failed)} video(s) failed: " + "; ".join(e["reason"] for e in failed))


def write_contact_sheet(store: Path, path: Path, frames_per_video: int = 3, max_videos: int = 4) -> Path | None:
    """PNG: per video a few frames, each row the real frame then its K pseudo views sorted by camera yaw
    (row label: video, frame, the views' yaw in degrees): a head that turns across a row is a novel view."""
    from pipeline_tasks.data.previews import grid

    root = pm.open_read(store)
    rows, labels = [], []
    for entry in [e for e in pm.read_index(store) if e.get("status") == "converted"][:max_videos]:
        g = root[entry["video_id"]]
        t = g["frames"].shape[0]
        for f in np.unique(np.linspace(0, t - 1, min(frames_per_video, t)).round().astype(int)):
            cams = g["view_cameras"][f]  # [K, 25]: cam2world row-major; entries 3 and 11 are the camera's x and z
            yaw = np.degrees(np.arctan2(cams[:, 3], cams[:, 11]))
            order = np.argsort(yaw)
            rows.append(np.concatenate([g["frames"][f][None], g["views"][f][order]]))
            labels.append(f"{entry['video_id'][:10]} t{f}: " + " ".join(f"{y:+.0f}" for y in yaw[order]))
    if not rows:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    k = rows[0].shape[0] - 1
    grid(
        np.stack(rows),
        pad=1,
        row_labels=labels,
        col_labels=["frame"] + [f"view {i + 1}" for i in range(k)],
        label_width=200,
    ).save(path)
    return path


def shards(inputs: Sequence[VideoInput], per_shard: int) -> list[list[VideoInput]]:
    per_shard = max(1, per_shard)
    return [list(inputs[i : i + per_shard]) for i in range(0, len(inputs), per_shard)]


def convert(
    cfg: PipelineConfig,
    psi3d: Artifact | str,
    motion_encoder: Artifact | str,
    videos: Artifact | str | None = None,
    registry: ArtifactRegistry | None = None,
    map_shards: Callable[[Callable[[list[VideoInput]], ConversionStats], list[list[VideoInput]]], list[ConversionStats]]
    | None = None,
    progress: bool = True,
) -> Artifact:
    """Build (or reuse, or resume) the ``pseudo_mv`` artifact.

    Video source: ``cfg.pseudo_mv.videos`` (a folder or glob of user videos) when set, else the
    ``synthetic_videos`` artifact ``videos``.
    """
    registry = registry or ArtifactRegistry()
    psi3d_art = stages.resolve(registry, psi3d, "psi3d", cfg.preset)
    me_art = stages.resolve(registry, motion_encoder, "motion_encoder", cfg.preset)
    parents = [psi3d_art, me_art]
    if cfg.pseudo_mv.videos:
        inputs = user_video_inputs(cfg.pseudo_mv.videos)
    else:
        vid_art = stages.resolve(registry, videos or "synthetic_videos@latest", "synthetic_videos", cfg.preset)
        parents.append(vid_art)
        inputs = synthetic_video_inputs(vid_art)
    if not inputs:
        raise ValueError("stage 3 has no input videos")
    cache_dir = registry.root / ".cache" / "ingest"

    def build(w: ArtifactWriter) -> None:
        store = w.path / STORE
        pm.open_or_create(store, {"video_source": cfg.pseudo_mv.videos or "synthetic_videos"})
        previous = {e["video_id"]: e for e in pm.read_index(store)} if (store / "zarr.json").exists() else {}

        def shard_fn(items: list[VideoInput], raise_failures: bool = False) -> ConversionStats:
            return convert_videos(cfg, items, store, psi3d_art, me_art, cache_dir, progress, raise_failures)

        parts = shards(inputs, cfg.pseudo_mv.shard_videos)
        results = map_shards(shard_fn, parts) if map_shards else [shard_fn(p) for p in parts]
        shutil.rmtree(pm.claims_dir(store), ignore_errors=True)
        index = _final_index(store, inputs, previous, results)
        pm.set_index(store, index)
        converted = [e for e in index if e["status"] == "converted"]
        if not converted:
            reasons = "; ".join(f"{e['source_file']}: {e.get('reason')}" for e in index)
            raise ValueError(f"stage 3 converted no video ({reasons})")
        pm.finalize(store)
        pm.validate(store)
        frames = sum(r.frames for r in results)
        secs = sum(r.seconds for r in results)
        w.counts.update(
            {
                "videos": len(converted),
                "skipped_videos": len(index) - len(converted),
                "frames": int(sum(e["frames"] for e in converted)),
                "views_per_frame": cfg.pseudo_mv.views_per_frame,
            }
        )
        w.extra["shards"] = [
            {
                "videos": len(r.converted),
                "frames": r.frames,
                "seconds": round(r.seconds, 2),
                "worker": r.worker,
                "device": r.device,
            }
            for r in results
        ]
        if frames and secs > 0:
            w.metrics.update(
                {"frames_per_s": frames / secs, "views_per_s": frames * cfg.pseudo_mv.views_per_frame / secs}
            )
        (w.path / "index.json").write_text(json.dumps(index, indent=2))
        write_contact_sheet(store, w.path / CONTACT_SHEET)
        fidelity = pseudo_view_fidelity(store)
        # synthetic videos: are the views novel views? (pipeline_tasks/eval/pseudo_view_check.py)
        if fidelity is not None:
            w.metrics.update({f"pseudo_views_{k}": v for k, v in fidelity.items() if isinstance(v, float)})
            (w.path / "pseudo_view_check.json").write_text(json.dumps(fidelity, indent=2))
        if progress and frames:
            print(
                f"pseudo_mv: {frames} frames, {frames * cfg.pseudo_mv.views_per_frame} views in {secs:.1f} s "
                f"({frames / secs:.1f} frames/s, {frames * cfg.pseudo_mv.views_per_frame / secs:.1f} views/s)"
            )

    return run_once(registry, KIND, stage_config(cfg, inputs), parents, SCHEMA_VERSION, build)


def _final_index(store: Path, inputs: Sequence[VideoInput], previous: dict, results: list[ConversionStats]) -> list:
    """The store's index in input order: this run's entries over an earlier run's; a finished group from an earlier
    (killed) run counts as converted."""
    entries = dict(previous)
    for r in results:
        for e in r.converted + r.skipped:
            entries[e["video_id"]] = e
    completed = set(pm.completed_videos(store))
    index = []
    for v in inputs:
        e = entries.get(v.video_id)
        if e is None and v.video_id in completed:
            e = {
                "video_id": v.video_id,
                "source_file": v.path,
                "frames": int(pm.open_group_frames(store, v.video_id)),
                "status": "converted",
            }
        if e is not None:
            index.append({**e, "also_at": list(v.also_at)} if v.also_at else e)
    return index


SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=("pseudo_mv",),
    # synthetic_videos unless pseudo_mv.videos names user videos
    parents=("psi3d", "motion_encoder", "synthetic_videos"),
    build=convert,
    config=lambda cfg: stage_config(cfg, []),
)


def _run_shard(shard_fn: Callable[..., ConversionStats], items: list[VideoInput], retries: int = 0) -> ConversionStats:
    """One shard as a Prefect task: while retries are left, a failed video fails the task (Prefect retries it,
    and the retry converts only what is not finished); the last attempt records it as ``failed`` instead."""
    from prefect.runtime import task_run

    attempt = int(task_run.run_count or 1)
    return shard_fn(items, raise_failures=attempt <= retries)


convert_shard_task = stage_task(_run_shard, "convert-video-shard", retry_condition_fn=transient_failure)


def prefect_map_shards(shard_fn, parts: list[list[VideoInput]], executor=None, runner=None) -> list[ConversionStats]:
    """Run each shard of videos as a mapped Prefect task (inside a flow run) and wait for all: on ``runner`` (a
    started Prefect task runner: threads, Dask) or the flow's own; ``executor`` (``pseudo_mv.executor``) sets the
    retries, their delay and the shard timeout."""
    from prefect import unmapped

    retries = executor.retries if executor is not None else 0
    task = convert_shard_task.with_options(
        retries=retries,
        retry_delay_seconds=executor.retry_delay_s if executor is not None else 0,
        timeout_seconds=executor.shard_timeout_s if executor is not None else None,
    )
    if runner is None:
        futures = task.map(unmapped(shard_fn), parts, unmapped(retries))
    else:
        futures = runner.map(task, {"shard_fn": unmapped(shard_fn), "items": parts, "retries": unmapped(retries)})
    progress = RunProgress("pseudo-mv-videos", "stage 3: videos of finished shards", sum(len(p) for p in parts))
    results, done = [], 0
    for f, items in zip(futures, parts):
        results.append(f.result())
        done += len(items)
        progress.update(done, f"{results[-1].frames} frames on {results[-1].worker or 'this process'}")
    return results
