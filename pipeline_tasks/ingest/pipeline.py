"""From a user's video to aligned frames, alpha masks, estimated cameras and per-frame quality flags.

Two passes, so memory does not grow with the video's length:

* ``analyse_video``: decode, find and track the face, flag, smooth crops, solve cameras. Keeps only
  small per-frame arrays (``IngestAnalysis``, cached compressed per video hash + ingestion-config hash);
* ``iter_aligned``: decode again and yield the aligned crops and masks of the chosen frames, a
  bounded chunk at a time (stage 3 renders and writes each chunk before reading the next).

``ingest_video`` does both and returns the whole video in memory (tests, short clips);
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

from pipeline_tasks.face import Face, FaceAnalyzer, Segmenter, largest_face, make_face_analyzer, make_segmenter
from pipeline_tasks.face.canonical import ALIGN_POINTS, KEYPOINT_NAMES, PNP_POINTS
from pipeline_tasks.ingest.align import estimate_crop, outside_fraction, warp_crop
from pipeline_tasks.ingest.camera import pose_to_label, reprojection_error, solve_head_pose
from pipeline_tasks.ingest.config import IngestConfig
from pipeline_tasks.ingest.decode import DecodeReport, VideoInfo, iter_batches, max_frames_stride, probe, select_frames
from pipeline_tasks.ingest.errors import IngestionError, VideoSkipped
from pipeline_tasks.ingest.smoothing import fill_gaps, one_euro_segments

INGEST_VERSION = 2  # bump when outputs change for the same config (invalidates caches)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")

# per-frame flags (bits)
NO_FACE = 1
LOW_CONFIDENCE = 2
LARGE_JUMP = 4
PNP_FAILED = 8
MULTIPLE_FACES = 16  # informational: other faces were in the frame (the tracked one was taken)
CROP_PADDED = 32  # informational: > 10 % of the crop lies outside the frame (border-filled)
TRACK_LOST = 64  # faces were found, none of them the tracked person (another person is never taken instead)
UNUSABLE = NO_FACE | LOW_CONFIDENCE | PNP_FAILED | TRACK_LOST
FLAG_NAMES = {
    NO_FACE: "no_face",
    LOW_CONFIDENCE: "low_confidence",
    LARGE_JUMP: "large_jump",
    PNP_FAILED: "pnp_failed",
    MULTIPLE_FACES: "multiple_faces",
    CROP_PADDED: "crop_padded",
    TRACK_LOST: "track_lost",
}

_KP_ALIGN = [KEYPOINT_NAMES.index(n) for n in ALIGN_POINTS]
_KP_PNP = [KEYPOINT_NAMES.index(n) for n in PNP_POINTS]


@dataclass(kw_only=True)
class IngestAnalysis:
    """Pass 1 of one video: per selected frame t, what the face analysis found. No pixels: a few hundred
    bytes per frame, so a long video's analysis stays small (and is what the cache keeps)."""

    path: str
    source_hash: str  # sha256 of the file
    config_hash: str  # hash of (IngestConfig, resolution, INGEST_VERSION)
    resolution: int
    fps: float  # output frame rate (after resampling, stride and the max_frames limit)
    cameras: np.ndarray  # f32 [T, 25] estimated cameras (DESIGN.md §6)
    flags: np.ndarray  # u8 [T] bit flags (NO_FACE, LOW_CONFIDENCE, ...)
    frame_indices: np.ndarray  # i64 [T] source frame index
    crop: np.ndarray  # f32 [T, 3] smoothed crop window (cx, cy, size) in source pixels
    keypoints: np.ndarray  # f32 [T, len(KEYPOINT_NAMES), 2] keypoints in crop-normalised coords (NaN: no face)
    face_score: np.ndarray  # f32 [T] detection confidence (0: no face)
    quality: dict[str, Any]  # per-video summary (counts, means, source info)
    camera_source: str = "estimated"
    from_cache: bool = False
    keypoint_names: tuple[str, ...] = field(default=KEYPOINT_NAMES)

    _ARRAYS = ("cameras", "flags", "frame_indices", "crop", "keypoints", "face_score")

    @property
    def usable(self) -> np.ndarray:
        return (self.flags & UNUSABLE) == 0

    def __len__(self) -> int:
        return len(self.flags)

    def attrs(self) -> dict[str, Any]:
        """JSON-able metadata for the pseudo_mv group attributes (DESIGN.md §5)."""
        return {
            "source_file": self.path,
            "source_hash": self.source_hash,
            "fps": self.fps,
            "camera_source": self.camera_source,
            "ingest_config_hash": self.config_hash,
            "resolution": self.resolution,
            "quality": self.quality,
            "flag_names": {str(k): v for k, v in FLAG_NAMES.items()},
        }

    def save(self, path: Path) -> None:
        """Atomic compressed .npz write (tmp file + rename): a crash never leaves a half cache entry."""
        meta = {
            "path": self.path,
            "source_hash": self.source_hash,
            "config_hash": self.config_hash,
            "resolution": self.resolution,
            "fps": self.fps,
            "quality": self.quality,
            "camera_source": self.camera_source,
        }
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **{n: getattr(self, n) for n in self._ARRAYS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> IngestAnalysis:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {n: z[n] for n in cls._ARRAYS}
        return cls(**meta, **arrays, from_cache=True)


@dataclass(kw_only=True)
class IngestResult(IngestAnalysis):
    """One ingested video held whole in memory: the analysis plus every frame's aligned crop and mask."""

    frames: np.ndarray  # u8 [T, R, R, 3] aligned crops
    alpha: np.ndarray  # u8 [T, R, R] foreground mask
    motion: np.ndarray | None = None  # f32 [T, D] from motion_fn (never cached)

    _ARRAYS = (*IngestAnalysis._ARRAYS, "frames", "alpha")

    def subset(self, mask_or_index: np.ndarray) -> IngestResult:
        """A result holding only the selected frames (e.g. ``r.subset(r.usable)``)."""
        sel = np.asarray(mask_or_index)
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self._ARRAYS:
            kw[name] = kw[name][sel]
        if self.motion is not None:
            kw["motion"] = self.motion[sel]
        return IngestResult(**kw)

    def save(self, path: Path) -> None:
        raise TypeError("only the analysis is cached (frames are decoded again): save an IngestAnalysis")


def config_hash(cfg: IngestConfig, resolution: int) -> str:
    blob = json.dumps(
        {"cfg": cfg.model_dump(mode="json"), "resolution": resolution, "version": INGEST_VERSION}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cache_paths(cache_dir: Path, info: VideoInfo, chash: str) -> tuple[Path, Path]:
    stem = f"{info.sha256[:24]}-{chash}"
    return cache_dir / f"{stem}.analysis.npz", cache_dir / f"{stem}.skip.json"


def make_analyzer(cfg: IngestConfig) -> FaceAnalyzer:
    if cfg.backend == "mediapipe":
        return make_face_analyzer("mediapipe", max_faces=cfg.max_faces, detector_range=cfg.detector_range)
    return make_face_analyzer(
        "face_alignment", landmarks=cfg.face_alignment_landmarks, detector=cfg.face_alignment_detector
    )


def analyse_video(
    path: str | Path,
    resolution: int,
    cfg: IngestConfig | None = None,
    cache_dir: str | Path | None = None,
    analyzer: FaceAnalyzer | None = None,
) -> tuple[VideoInfo, IngestAnalysis]:
    """Pass 1 of one video (probe, faces, flags, crops, cameras); raises ``IngestionError`` (bad input) or
    ``VideoSkipped`` (not usable). With ``cache_dir`` the analysis (or the reason for a skip) is kept per
    file hash and config hash. ``analyzer`` may be shared across videos (it is reset per video)."""
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
                a = IngestAnalysis.load(npz)
                a.path = str(path)
                return info, a
            except Exception:  # a corrupt cache entry is recomputed, never trusted
                npz.unlink(missing_ok=True)
        if skip.is_file():
            raise VideoSkipped(path, json.loads(skip.read_text())["reason"] + " (cached)")
    own = analyzer is None
    analyzer = analyzer or make_analyzer(cfg)
    try:
        a = _analyse(info, resolution, cfg, chash, analyzer)
    except VideoSkipped as e:
        if skip is not None:
            skip.write_text(json.dumps({"path": str(path), "reason": e.reason, "sha256": info.sha256}))
        raise
    finally:
        if own:
            analyzer.close()
    if npz is not None:
        a.save(npz)
    return info, a


def iter_aligned(
    info: VideoInfo,
    analysis: IngestAnalysis,
    cfg: IngestConfig,
    segmenter: Segmenter | None,
    positions: np.ndarray | None = None,
    chunk: int = 64,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pass 2: ``(rows, frames u8 [b,R,R,3], alpha u8 [b,R,R])`` for the analysed frames at ``positions``
    (default: all), ``chunk`` at a time and in order; ``rows`` index into ``positions``. Memory is one chunk
    of decoded frames. A frame that decoded in pass 1 and not now raises ``IngestionError``."""
    res = analysis.resolution
    positions = np.arange(len(analysis)) if positions is None else np.asarray(positions, dtype=np.int64)
    report = DecodeReport()
    expected = 0
    for rows, batch in iter_batches(info.path, analysis.frame_indices[positions], chunk, info.codec, info, report):
        if len(rows) and rows[0] != expected:  # the decoder dropped a frame it read in pass 1
            break
        frames = np.empty((len(rows), res, res, 3), dtype=np.uint8)
        alpha = np.full((len(rows), res, res), 255, dtype=np.uint8)
        for j, (row, frame) in enumerate(zip(rows, batch)):
            frames[j] = warp_crop(frame, analysis.crop[positions[row]], res, cfg.border)
            if segmenter is not None:
                alpha[j] = np.round(segmenter.mask(frames[j]) * 255).astype(np.uint8)
        expected = int(rows[-1]) + 1
        yield rows, frames, alpha
    if expected != len(positions):
        lost = analysis.frame_indices[positions[expected:]][:5].tolist()
        raise IngestionError(
            info.path,
            f"frames from {lost} decoded in the first pass and not in the second "
            f"({'; '.join(report.errors[:2]) or 'no decoder message'})",
        )


def ingest_video(
    path: str | Path,
    resolution: int,
    cfg: IngestConfig | None = None,
    cache_dir: str | Path | None = None,
    motion_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    analyzer: FaceAnalyzer | None = None,
    segmenter: Segmenter | None = None,
) -> IngestResult:
    """Ingest one video whole into memory (both passes); raises ``IngestionError`` or ``VideoSkipped``.

    ``analyzer``/``segmenter`` may be shared across videos. For long videos use ``analyse_video`` and
    ``iter_aligned`` (stage 3 does): this holds every aligned frame at once."""
    cfg = cfg or IngestConfig()
    info, a = analyse_video(path, resolution, cfg, cache_dir, analyzer)
    own = segmenter is None and cfg.segmentation
    segmenter = segmenter or (make_segmenter(cfg.segmentation_model) if cfg.segmentation else None)
    frames = np.empty((len(a), resolution, resolution, 3), dtype=np.uint8)
    alpha = np.empty((len(a), resolution, resolution), dtype=np.uint8)
    try:
        for rows, f, m in iter_aligned(info, a, cfg, segmenter, chunk=cfg.decode_batch):
            frames[rows], alpha[rows] = f, m
    finally:
        if own and segmenter is not None:
            segmenter.close()
    res = IngestResult(**{f.name: getattr(a, f.name) for f in fields(a)}, frames=frames, alpha=alpha)
    res.path = str(path)
    return _with_motion(res, motion_fn)


def _with_motion(res: IngestResult, motion_fn) -> IngestResult:
    if motion_fn is None:
        return res
    m = np.asarray(motion_fn(res.frames), dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != len(res):
        raise ValueError(f"{res.path}: motion_fn returned shape {m.shape}, expected [T={len(res)}, D]")
    res.motion = m
    return res


def _box(face: Face) -> np.ndarray:
    """(cx, cy, size) of a face box, size = sqrt(area)."""
    b = face.bbox
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, max(face.area, 1e-6) ** 0.5])


def track_face(faces: list[Face], last: np.ndarray | None, gate: float) -> tuple[Face | None, bool]:
    """The tracked person's face among ``faces``: the largest while nothing is tracked yet, then the one nearest
    the last tracked box (centre distance ≤ ``gate`` × its size, size within a factor 2). Returns (face, lost):
    ``lost`` when faces were found but none is the tracked person; another person is never taken instead."""
    if not faces:
        return None, False
    if last is None:
        return largest_face(faces), False
    boxes = np.stack([_box(f) for f in faces])
    dist = np.linalg.norm(boxes[:, :2] - last[:2], axis=1) / last[2]
    ok = (dist <= gate) & (np.abs(np.log(boxes[:, 2] / last[2])) <= np.log(2.0))
    if not ok.any():
        return None, True
    return faces[int(np.argmin(np.where(ok, dist, np.inf)))], False


def _analyse(info: VideoInfo, resolution: int, cfg: IngestConfig, chash: str, analyzer: FaceAnalyzer) -> IngestAnalysis:
    t_start = time.perf_counter()
    path = info.path
    indices, fps = select_frames(info, cfg.target_fps, cfg.frame_stride, cfg.max_frames)
    n_before_limit = len(select_frames(info, cfg.target_fps, cfg.frame_stride, None)[0])
    if len(indices) == 0:
        raise IngestionError(path, "zero frames after frame selection (target_fps/stride/max_frames)")
    analyzer.reset()
    faces, damage = _track_faces(info, indices, cfg, analyzer)
    lost = np.zeros(0, dtype=np.int64)
    if damage.missing_positions:  # frames the decoder could not read: left out of the video, recorded
        ok = np.ones(len(indices), dtype=bool)
        ok[damage.missing_positions] = False
        lost, indices = indices[~ok], indices[ok]
        faces = {k: v[ok] for k, v in faces.items()}
    kp, score = faces["keypoints"], faces["score"]
    flags, raw, has_face = _quality_flags(faces, cfg)
    _check_usable(path, flags, cfg, "no face found" if not has_face.any() else None)
    crop, valid, starts = _smoothed_crops(raw, flags, fps, cfg, info)
    kp_crop = (kp - crop[:, None, :2]) / crop[:, None, 2:3] + 0.5
    pose = _head_poses(kp_crop, flags, valid)
    _check_usable(path, flags, cfg, None)
    pose_ok = ~np.isnan(pose[:, 0])
    pose = one_euro_segments(fill_gaps(pose, pose_ok), fps, cfg.camera_smoothing, starts)  # gaps filled, smoothed
    cameras = np.stack([pose_to_label(p[:3], p[3:]) for p in pose])
    reproj = np.array(
        [reprojection_error(cameras[t], kp_crop[t, _KP_PNP]) if pose_ok[t] else np.nan for t in range(len(indices))]
    )
    usable = (flags & UNUSABLE) == 0
    quality = {
        "n_frames": int(len(indices)),
        "n_usable": int(usable.sum()),
        "usable_fraction": float(usable.mean()),
        "flag_counts": {name: int(((flags & bit) != 0).sum()) for bit, name in FLAG_NAMES.items()},
        "mean_face_score": float(score[has_face].mean()) if has_face.any() else 0.0,
        "mean_reprojection_px": float(np.nanmean(reproj) * resolution) if pose_ok.any() else None,
        "median_crop_px": float(np.median(crop[:, 2])),
        "backend": analyzer.name,
        "source": {
            "width": info.width,
            "height": info.height,
            "codec": info.codec,
            "container": info.container,
            "fps": info.source_fps,
            "n_frames": info.n_source_frames,
            "rotation": info.rotation,
        },
        "max_frames_stride": max_frames_stride(n_before_limit, cfg.max_frames),  # > 1: a long video subsampled
        "frames_before_max_frames": int(n_before_limit),
        "damaged_frames": int(len(lost)),  # selected frames the decoder could not read, left out
        "damaged_source_frames": lost[:100].tolist(),
        "decode_errors": damage.errors[:10],
        "truncated": info.demux_error,  # the container broke off here; the frames before it are kept
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    return IngestAnalysis(
        path=str(path),
        source_hash=info.sha256,
        config_hash=chash,
        resolution=resolution,
        fps=float(fps),
        cameras=cameras.astype(np.float32),
        flags=flags,
        frame_indices=indices,
        crop=crop.astype(np.float32),
        keypoints=kp_crop.astype(np.float32),
        face_score=score,
        quality=quality,
    )


def _track_faces(
    info: VideoInfo, indices: np.ndarray, cfg: IngestConfig, analyzer: FaceAnalyzer
) -> tuple[dict[str, np.ndarray], DecodeReport]:
    """Pass 1: faces on (downscaled) frames, one tracked person. Per selected frame: its keypoints in source
    pixels (NaN without a face), score, number of faces seen and whether the tracked person was lost."""
    n = len(indices)
    kp = np.full((n, len(KEYPOINT_NAMES), 2), np.nan)
    score = np.zeros(n, dtype=np.float32)
    n_faces = np.zeros(n, dtype=np.int32)
    lost_track = np.zeros(n, dtype=bool)
    f = min(1.0, cfg.analysis_max_side / max(info.width, info.height))
    damage = DecodeReport()
    last = None  # the tracked person's last box (cx, cy, size) in analysis pixels
    for positions, batch in iter_batches(info.path, indices, cfg.decode_batch, info.codec, info, damage):
        for t, frame in zip(positions, batch):
            small = (
                frame
                if f == 1.0
                else cv2.resize(frame, (round(info.width * f), round(info.height * f)), interpolation=cv2.INTER_AREA)
            )
            faces = analyzer.faces(small)
            face, lost_track[t] = track_face(faces, last, cfg.track_gate)
            n_faces[t] = len(faces)
            if face is not None:
                last = _box(face)
                sx, sy = info.width / small.shape[1], info.height / small.shape[0]
                kp[t] = face.keypoints * (sx, sy)
                score[t] = face.score
    return {"keypoints": kp, "score": score, "n_faces": n_faces, "lost_track": lost_track}, damage


def _quality_flags(faces: dict[str, np.ndarray], cfg: IngestConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame flags (no face, lost track, low confidence, several faces, a jump of the crop) and the raw
    crop (cx, cy, size) of each frame with a face."""
    kp, score, n_faces, lost_track = faces["keypoints"], faces["score"], faces["n_faces"], faces["lost_track"]
    n = len(kp)
    flags = np.zeros(n, dtype=np.uint8)
    has_face = ~np.isnan(kp[:, 0, 0])
    flags[~has_face & ~lost_track] |= NO_FACE
    flags[lost_track] |= TRACK_LOST
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
    return flags, raw, has_face


def _smoothed_crops(
    raw: np.ndarray, flags: np.ndarray, fps: float, cfg: IngestConfig, info: VideoInfo
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops smoothed in units of the median crop size (so the filter is resolution independent), restarted
    at large jumps; flags frames whose crop leaves the image (``CROP_PADDED``). Returns (crop, valid, starts)."""
    valid = (flags & (NO_FACE | LOW_CONFIDENCE | TRACK_LOST)) == 0
    starts = (flags & LARGE_JUMP) != 0
    scale = float(np.median(raw[valid, 2]))
    sig = np.stack([raw[:, 0] / scale, raw[:, 1] / scale, np.log(raw[:, 2] / scale)], axis=1)
    sig = one_euro_segments(fill_gaps(sig, valid), fps, cfg.crop_smoothing, starts)
    crop = np.stack([sig[:, 0] * scale, sig[:, 1] * scale, np.exp(sig[:, 2]) * scale], axis=1)
    for t in range(len(crop)):
        if outside_fraction(crop[t], info.width, info.height) > 0.1:
            flags[t] |= CROP_PADDED
    return crop, valid, starts


def _head_poses(kp_crop: np.ndarray, flags: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Head pose (rotation, translation) ``[T, 6]`` by PnP on each valid frame; NaN elsewhere, and
    ``PNP_FAILED`` where PnP fails."""
    pose = np.full((len(kp_crop), 6), np.nan)
    for t in np.flatnonzero(valid):
        sol = solve_head_pose(kp_crop[t, _KP_PNP])
        if sol is None:
            flags[t] |= PNP_FAILED
        else:
            pose[t] = np.concatenate(sol)
    return pose


def _check_usable(path: Path, flags: np.ndarray, cfg: IngestConfig, why: str | None) -> None:
    usable = int(((flags & UNUSABLE) == 0).sum())
    need = max(cfg.min_usable_frames, int(np.ceil(cfg.min_usable_fraction * len(flags))))
    if usable < need:
        counts = ", ".join(
            f"{name} {int(((flags & bit) != 0).sum())}" for bit, name in FLAG_NAMES.items() if bit & UNUSABLE
        )
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
    paths: Iterable[str | Path],
    resolution: int,
    cfg: IngestConfig | None = None,
    cache_dir: str | Path | None = None,
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
    paths: Iterable[str | Path],
    resolution: int,
    cfg: IngestConfig | None = None,
    cache_dir: str | Path | None = None,
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
