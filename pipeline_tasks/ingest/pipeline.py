"""From a user's video to aligned frames, alpha masks, estimated cameras and per-frame quality flags.

``ingest_video`` does one video (cached per video hash + ingestion-config hash);
``iter_ingest`` / ``ingest_videos`` do many, recording why a bad one was skipped and going on.
Motion embeddings are the caller's: pass ``motion_fn(frames u8 [T,H,W,3]) -> [T, D]``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline_tasks.face import FaceAnalyzer, Segmenter, largest_face, make_face_analyzer, make_segmenter
from pipeline_tasks.face.canonical import ALIGN_POINTS, KEYPOINT_NAMES, PNP_POINTS
from pipeline_tasks.ingest.align import estimate_crop, outside_fraction, warp_crop
from pipeline_tasks.ingest.camera import pose_to_label, reprojection_error, solve_head_pose
from pipeline_tasks.ingest.config import IngestConfig
from pipeline_tasks.ingest.decode import DecodeReport, VideoInfo, iter_batches, probe, select_frames
from pipeline_tasks.ingest.errors import IngestionError, VideoSkipped
from pipeline_tasks.ingest.smoothing import fill_gaps, one_euro_segments

INGEST_VERSION = 1  # bump when outputs change for the same config (invalidates caches)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")

# per-frame flags (bits)
NO_FACE = 1
LOW_CONFIDENCE = 2
LARGE_JUMP = 4
PNP_FAILED = 8
MULTIPLE_FACES = 16  # informational: the largest face was taken
CROP_PADDED = 32  # informational: > 10 % of the crop lies outside the frame (border-filled)
UNUSABLE = NO_FACE | LOW_CONFIDENCE | PNP_FAILED
FLAG_NAMES = {NO_FACE: "no_face", LOW_CONFIDENCE: "low_confidence", LARGE_JUMP: "large_jump", PNP_FAILED: "pnp_failed",
              MULTIPLE_FACES: "multiple_faces", CROP_PADDED: "crop_padded"}

_KP_ALIGN = [KEYPOINT_NAMES.index(n) for n in ALIGN_POINTS]
_KP_PNP = [KEYPOINT_NAMES.index(n) for n in PNP_POINTS]
_KEEP_DECODED_BYTES = 256 << 20  # keep decoded frames between the two passes below this size, else decode twice


@dataclass
class IngestResult:
    """One ingested video. Arrays are per output frame t (all decoded frames; see ``usable``)."""

    path: str
    source_hash: str  # sha256 of the file
    config_hash: str  # hash of (IngestConfig, resolution, INGEST_VERSION)
    resolution: int
    fps: float  # output frame rate (after resampling and stride)
    frames: np.ndarray  # u8 [T, R, R, 3] aligned crops
    alpha: np.ndarray  # u8 [T, R, R] foreground mask
    cameras: np.ndarray  # f32 [T, 25] estimated cameras (DESIGN.md §6)
    flags: np.ndarray  # u8 [T] bit flags (NO_FACE, LOW_CONFIDENCE, ...)
    frame_indices: np.ndarray  # i64 [T] source frame index
    crop: np.ndarray  # f32 [T, 3] smoothed crop window (cx, cy, size) in source pixels
    keypoints: np.ndarray  # f32 [T, len(KEYPOINT_NAMES), 2] keypoints in crop-normalised coords (NaN: no face)
    face_score: np.ndarray  # f32 [T] detection confidence (0: no face)
    quality: dict[str, Any]  # per-video summary (counts, means, source info)
    camera_source: str = "estimated"
    motion: np.ndarray | None = None  # f32 [T, D] from motion_fn (never cached)
    from_cache: bool = False
    keypoint_names: tuple[str, ...] = field(default=KEYPOINT_NAMES)

    _ARRAYS = ("frames", "alpha", "cameras", "flags", "frame_indices", "crop", "keypoints", "face_score")

    @property
    def usable(self) -> np.ndarray:
        return (self.flags & UNUSABLE) == 0

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, mask_or_index: np.ndarray) -> IngestResult:
        """A result holding only the selected frames (e.g. ``r.subset(r.usable)``)."""
        sel = np.asarray(mask_or_index)
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self._ARRAYS:
            kw[name] = kw[name][sel]
        if self.motion is not None:
            kw["motion"] = self.motion[sel]
        return IngestResult(**kw)

    def attrs(self) -> dict[str, Any]:
        """JSON-able metadata for the pseudo_mv group attributes (DESIGN.md §5)."""
        return {"source_file": self.path, "source_hash": self.source_hash, "fps": self.fps, "camera_source": self.camera_source,
                "ingest_config_hash": self.config_hash, "resolution": self.resolution, "quality": self.quality,
                "flag_names": {str(k): v for k, v in FLAG_NAMES.items()}}

    def save(self, path: Path) -> None:
        """Atomic .npz write (tmp file + rename): a crash never leaves a half cache entry."""
        meta = {"path": self.path, "source_hash": self.source_hash, "config_hash": self.config_hash, "resolution": self.resolution,
                "fps": self.fps, "quality": self.quality, "camera_source": self.camera_source}
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **{n: getattr(self, n) for n in self._ARRAYS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> IngestResult:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {n: z[n] for n in cls._ARRAYS}
        return cls(**meta, **arrays, from_cache=True)


def config_hash(cfg: IngestConfig, resolution: int) -> str:
    blob = json.dumps({"cfg": cfg.model_dump(mode="json"), "resolution": resolution, "version": INGEST_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cache_paths(cache_dir: Path, info: VideoInfo, chash: str) -> tuple[Path, Path]:
    stem = f"{info.sha256[:24]}-{chash}"
    return cache_dir / f"{stem}.npz", cache_dir / f"{stem}.skip.json"


def make_analyzer(cfg: IngestConfig) -> FaceAnalyzer:
    if cfg.backend == "mediapipe":
        return make_face_analyzer("mediapipe", max_faces=cfg.max_faces, detector_range=cfg.detector_range)
    return make_face_analyzer("face_alignment", landmarks=cfg.face_alignment_landmarks, detector=cfg.face_alignment_detector)


def ingest_video(
    path: str | Path,
    resolution: int,
    cfg: IngestConfig | None = None,
    cache_dir: str | Path | None = None,
    motion_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    analyzer: FaceAnalyzer | None = None,
    segmenter: Segmenter | None = None,
) -> IngestResult:
    """Ingest one video; raises ``IngestionError`` (bad input) or ``VideoSkipped`` (not usable).

    ``analyzer``/``segmenter`` may be shared across videos (the analyser is reset per video).
    """
    cfg = cfg or IngestConfig()
    path = Path(path)
    info = probe(path)
    chash = config_hash(cfg, resolution)
    npz = skip = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        npz, skip = _cache_paths(cache_dir, info, chash)
        if npz.is_file():
            try:
                res = IngestResult.load(npz)
                res.path = str(path)
                return _with_motion(res, motion_fn)
            except Exception:  # a corrupt cache entry is recomputed, never trusted
                npz.unlink(missing_ok=True)
        if skip.is_file():
            raise VideoSkipped(path, json.loads(skip.read_text())["reason"] + " (cached)")
    own_analyzer, own_segmenter = analyzer is None, segmenter is None and cfg.segmentation
    analyzer = analyzer or make_analyzer(cfg)
    segmenter = segmenter or (make_segmenter(cfg.segmentation_model) if cfg.segmentation else None)
    try:
        res = _ingest(info, resolution, cfg, chash, analyzer, segmenter)
    except VideoSkipped as e:
        if skip is not None:
            skip.write_text(json.dumps({"path": str(path), "reason": e.reason, "sha256": info.sha256}))
        raise
    finally:
        if own_analyzer:
            analyzer.close()
        if own_segmenter and segmenter is not None:
            segmenter.close()
    if npz is not None:
        res.save(npz)
    return _with_motion(res, motion_fn)


def _with_motion(res: IngestResult, motion_fn) -> IngestResult:
    if motion_fn is None:
        return res
    m = np.asarray(motion_fn(res.frames), dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != len(res):
        raise ValueError(f"{res.path}: motion_fn returned shape {m.shape}, expected [T={len(res)}, D]")
    res.motion = m
    return res


def _ingest(info: VideoInfo, resolution: int, cfg: IngestConfig, chash: str, analyzer: FaceAnalyzer,
            segmenter: Segmenter | None) -> IngestResult:
    t_start = time.perf_counter()
    path = info.path
    indices, fps = select_frames(info, cfg.target_fps, cfg.frame_stride, cfg.max_frames)
    n = len(indices)
    if n == 0:
        raise IngestionError(path, "zero frames after frame selection (target_fps/stride/max_frames)")
    analyzer.reset()

    # pass 1: faces on (downscaled) frames
    kp = np.full((n, len(KEYPOINT_NAMES), 2), np.nan)
    score = np.zeros(n, dtype=np.float32)
    n_faces = np.zeros(n, dtype=np.int32)
    keep = info.width * info.height * 3 * n <= _KEEP_DECODED_BYTES
    f = min(1.0, cfg.analysis_max_side / max(info.width, info.height))
    damage = DecodeReport()
    decoded: list[tuple[np.ndarray, np.ndarray]] = []
    for positions, batch in iter_batches(path, indices, cfg.decode_batch, info.codec, info, damage):
        if keep:
            decoded.append((positions, batch))
        for t, frame in zip(positions, batch):
            small = frame if f == 1.0 else cv2.resize(frame, (round(info.width * f), round(info.height * f)), interpolation=cv2.INTER_AREA)
            faces = analyzer.faces(small)
            face = largest_face(faces)
            n_faces[t] = len(faces)
            if face is not None:
                sx, sy = info.width / small.shape[1], info.height / small.shape[0]
                kp[t] = face.keypoints * (sx, sy)
                score[t] = face.score
    lost = np.zeros(0, dtype=np.int64)
    if damage.missing_positions:  # frames the decoder could not read: left out of the video, recorded
        ok = np.ones(n, dtype=bool)
        ok[damage.missing_positions] = False
        lost, indices = indices[~ok], indices[ok]
        kp, score, n_faces = kp[ok], score[ok], n_faces[ok]
        renumber = np.cumsum(ok) - 1
        decoded = [(renumber[p], b) for p, b in decoded]
        n = len(indices)

    # per-frame quality
    flags = np.zeros(n, dtype=np.uint8)
    has_face = ~np.isnan(kp[:, 0, 0])
    flags[~has_face] |= NO_FACE
    flags[has_face & (score < cfg.min_face_score)] |= LOW_CONFIDENCE
    flags[n_faces > 1] |= MULTIPLE_FACES
    raw = np.full((n, 3), np.nan)
    for t in np.flatnonzero(has_face):
        raw[t] = estimate_crop(kp[t, _KP_ALIGN])
    prev = None
    for t in np.flatnonzero(has_face):
        if prev is not None:
            d = np.linalg.norm(raw[t, :2] - raw[prev, :2]) / raw[prev, 2]
            if d > cfg.max_jump or abs(np.log(raw[t, 2] / raw[prev, 2])) > cfg.max_jump:
                flags[t] |= LARGE_JUMP
        prev = t
    _check_usable(path, flags, cfg, "no face found" if not has_face.any() else None)

    # smoothed crops (in units of the median crop size, so the filter is resolution independent)
    valid = (flags & (NO_FACE | LOW_CONFIDENCE)) == 0
    starts = (flags & LARGE_JUMP) != 0
    scale = float(np.median(raw[valid, 2]))
    sig = np.stack([raw[:, 0] / scale, raw[:, 1] / scale, np.log(raw[:, 2] / scale)], axis=1)
    sig = one_euro_segments(fill_gaps(sig, valid), fps, cfg.crop_smoothing, starts)
    crop = np.stack([sig[:, 0] * scale, sig[:, 1] * scale, np.exp(sig[:, 2]) * scale], axis=1)
    kp_crop = (kp - crop[:, None, :2]) / crop[:, None, 2:3] + 0.5
    for t in range(n):
        if outside_fraction(crop[t], info.width, info.height) > 0.1:
            flags[t] |= CROP_PADDED

    # cameras: PnP per valid frame, gaps filled, smoothed
    pose = np.full((n, 6), np.nan)
    for t in np.flatnonzero(valid):
        sol = solve_head_pose(kp_crop[t, _KP_PNP])
        if sol is None:
            flags[t] |= PNP_FAILED
        else:
            pose[t] = np.concatenate(sol)
    _check_usable(path, flags, cfg, None)
    pose_ok = ~np.isnan(pose[:, 0])
    pose = one_euro_segments(fill_gaps(pose, pose_ok), fps, cfg.camera_smoothing, starts)
    cameras = np.stack([pose_to_label(p[:3], p[3:]) for p in pose])
    reproj = np.array([reprojection_error(cameras[t], kp_crop[t, _KP_PNP]) if pose_ok[t] else np.nan for t in range(n)])

    # pass 2: aligned crops and masks
    frames = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    alpha = np.full((n, resolution, resolution), 255, dtype=np.uint8)
    again = DecodeReport()
    batches = decoded if keep else iter_batches(path, indices, cfg.decode_batch, info.codec, info, again)
    for positions, batch in batches:
        for t, frame in zip(positions, batch):
            frames[t] = warp_crop(frame, crop[t], resolution, cfg.border)
            if segmenter is not None:
                alpha[t] = np.round(segmenter.mask(frames[t]) * 255).astype(np.uint8)
    decoded.clear()
    if again.missing_positions:
        raise IngestionError(path, f"frames {indices[again.missing_positions[:5]].tolist()} decoded once and not the second time "
                                   f"({'; '.join(again.errors[:2])})")

    usable = (flags & UNUSABLE) == 0
    quality = {
        "n_frames": int(n),
        "n_usable": int(usable.sum()),
        "usable_fraction": float(usable.mean()),
        "flag_counts": {name: int(((flags & bit) != 0).sum()) for bit, name in FLAG_NAMES.items()},
        "mean_face_score": float(score[has_face].mean()) if has_face.any() else 0.0,
        "mean_reprojection_px": float(np.nanmean(reproj) * resolution) if pose_ok.any() else None,
        "median_crop_px": float(np.median(crop[:, 2])),
        "backend": analyzer.name,
        "source": {"width": info.width, "height": info.height, "codec": info.codec, "container": info.container,
                   "fps": info.source_fps, "n_frames": info.n_source_frames, "rotation": info.rotation},
        "damaged_frames": int(len(lost)),  # selected frames the decoder could not read, left out
        "damaged_source_frames": lost[:100].tolist(),
        "decode_errors": damage.errors[:10],
        "truncated": info.demux_error,  # the container broke off here; the frames before it are kept
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    return IngestResult(
        path=str(path), source_hash=info.sha256, config_hash=chash, resolution=resolution, fps=float(fps), frames=frames,
        alpha=alpha, cameras=cameras.astype(np.float32), flags=flags, frame_indices=indices, crop=crop.astype(np.float32),
        keypoints=kp_crop.astype(np.float32), face_score=score, quality=quality,
    )


def _check_usable(path: Path, flags: np.ndarray, cfg: IngestConfig, why: str | None) -> None:
    usable = int(((flags & UNUSABLE) == 0).sum())
    need = max(cfg.min_usable_frames, int(np.ceil(cfg.min_usable_fraction * len(flags))))
    if usable < need:
        counts = ", ".join(f"{name} {int(((flags & bit) != 0).sum())}" for bit, name in FLAG_NAMES.items() if bit & UNUSABLE)
        raise VideoSkipped(path, f"too few usable frames: {usable} of {len(flags)} (need {need}; {why or counts})")


def expand_video_inputs(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Video files from a folder (recursive, by extension), a glob pattern, a file, or a list of those.

    A missing input or a pattern that matches no video raises ``IngestionError`` naming it.
    """
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise IngestionError(p, f"no video files in this folder (extensions {', '.join(VIDEO_EXTENSIONS)})")
        elif p.is_file():
            found = [p]
        elif glob.has_magic(str(item)):
            found = sorted(Path(q) for q in glob.glob(str(p), recursive=True) if Path(q).is_file())
            if not found:
                raise IngestionError(item, "the pattern matches no file")
        else:
            raise IngestionError(p, "file not found")
        out += [q for q in found if q not in out]
    return out


def iter_ingest(
    paths: Iterable[str | Path], resolution: int, cfg: IngestConfig | None = None, cache_dir: str | Path | None = None,
    motion_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[Path, IngestResult | None, str | None]]:
    """Yield ``(path, result, None)`` or ``(path, None, reason)`` per video; a bad video never stops the others."""
    cfg = cfg or IngestConfig()
    analyzer = segmenter = None
    try:
        for p in paths:
            p = Path(p)
            try:
                if analyzer is None:
                    analyzer = make_analyzer(cfg)
                    segmenter = make_segmenter(cfg.segmentation_model) if cfg.segmentation else None
                res = ingest_video(p, resolution, cfg, cache_dir, motion_fn, analyzer=analyzer, segmenter=segmenter)
            except IngestionError as e:  # VideoSkipped included
                yield p, None, e.reason
                continue
            except Exception as e:  # noqa: BLE001 — any other fault (a detector or codec error, memory) fails this video only
                for model in (analyzer, segmenter):  # a model that failed mid-call is not trusted with the next video
                    if model is not None:
                        model.close()
                analyzer = segmenter = None
                yield p, None, f"{p}: ingestion failed: {type(e).__name__}: {e}"
                continue
            yield p, res, None
    finally:
        if analyzer is not None:
            analyzer.close()
        if segmenter is not None:
            segmenter.close()


def ingest_videos(
    paths: Iterable[str | Path], resolution: int, cfg: IngestConfig | None = None, cache_dir: str | Path | None = None,
    motion_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[dict[str, IngestResult], dict[str, str]]:
    """Ingest many videos: (results by path, skipped: path → reason)."""
    results, skipped = {}, {}
    for p, res, reason in iter_ingest(paths, resolution, cfg, cache_dir, motion_fn):
        if res is None:
            skipped[str(p)] = reason
        else:
            results[str(p)] = res
    return results, skipped
