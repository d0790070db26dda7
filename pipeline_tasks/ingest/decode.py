"""Video decoding with PyAV (FFmpeg), whatever FFmpeg reads: every codec and container it has (H.264, HEVC,
AV1, VP9, GIF, ...), any frame size, variable frame rate, rotation metadata and damaged stretches.

Why PyAV and not decord: decord 0.6.0 ships FFmpeg 4.1 and rejects AV1 and animated GIF, returns
garbage channels for widths 16/24/48/72, and loses a whole file to one damaged stretch. PyAV
bundles a current FFmpeg and hands us packets and frames one at a time, so:

* ``probe`` reads the container (cheap: packets are demuxed, not decoded) and tells "not a video",
  "no video stream", "zero frames" and "unreadable stream" apart; every frame's presentation time
  comes from the container, so frame selection is variable-frame-rate safe;
* ``iter_batches`` decodes in presentation order and yields the selected frames with their
  positions; a packet the decoder rejects loses its frame, not the file (the caller records which);
* frames are turned upright by the stream's display matrix (phones store portrait video sideways).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline_tasks.ingest.errors import IngestionError


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file's bytes (provenance and cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


@dataclass
class VideoInfo:
    path: Path
    sha256: str
    width: int  # of the upright frames
    height: int
    n_source_frames: int
    source_fps: float
    codec: str
    container: str
    timestamps: np.ndarray = field(
        repr=False, default_factory=lambda: np.zeros(0)
    )  # [n] presentation times (s), sorted
    rotation: int = 0  # degrees the stored frames are turned counter-clockwise to display upright
    demux_error: str | None = None  # the container ended early (a truncated tail): frames up to there are kept


def _open(path: Path):
    import av

    c = av.open(str(path))
    s = c.streams.video[0]
    s.thread_type = "AUTO"
    return c, s


def _upright(frame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    k = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def probe(path: str | Path) -> VideoInfo:
    """Check that ``path`` is a readable video with frames; raise ``IngestionError`` naming the cause."""
    path = Path(path)
    if not path.exists():
        raise IngestionError(path, "file not found")
    if not path.is_file():
        raise IngestionError(path, "not a file (a directory or special file)")
    if path.stat().st_size == 0:
        raise IngestionError(path, "not a video: the file is empty (0 bytes)")
    import av

    pts: list[int | None] = []
    demux_error = None
    try:
        with av.open(str(path)) as c:
            container = c.format.name
            if not c.streams:
                raise IngestionError(
                    path,
                    "zero frames: the container holds no streams at all "
                    "(nothing was written, or the file is truncated)",
                )
            if not c.streams.video:
                kinds = sorted({s.type for s in c.streams}) or ["none"]
                raise IngestionError(
                    path, f"not a video: the container has no video stream (streams: {', '.join(kinds)})"
                )
            s = c.streams.video[0]
            codec = s.codec_context.name if s.codec_context else "unknown"
            rate = s.average_rate or s.guessed_rate
            time_base = float(s.time_base) if s.time_base else None
            try:
                for packet in c.demux(s):
                    if packet.size:
                        pts.append(packet.pts if packet.pts is not None else packet.dts)
            except av.error.EOFError:
                pass
            except Exception as e:  # a truncated or damaged container: keep the packets read so far
                demux_error = _first_line(e)
    except IngestionError:
        raise
    except av.error.EOFError as e:  # a header and nothing after it (e.g. Matroska with no frames)
        raise IngestionError(path, f"zero frames: the file ends before any video frame ({_first_line(e)})") from e
    except Exception as e:  # av.error.InvalidDataError and friends
        raise IngestionError(path, f"not a video: the container cannot be read ({_first_line(e)})") from e
    if not pts:
        raise IngestionError(
            path, "zero frames: the video stream is empty" + (f" ({demux_error})" if demux_error else "")
        )

    fps = float(rate) if rate else 0.0
    if time_base and all(p is not None for p in pts):
        ts = np.sort(np.asarray(pts, dtype=np.float64)) * time_base
        if not fps and len(ts) > 1 and ts[-1] > ts[0]:
            fps = (len(ts) - 1) / (ts[-1] - ts[0])
    else:
        ts = None
    fps = fps or 25.0
    if ts is None:
        ts = np.arange(len(pts)) / fps

    first = None
    try:
        c, s = _open(path)
        with c:
            for frame in _decode_frames(c, s, path, codec, errors=None):
                first = frame
                break
    except IngestionError:
        raise
    except Exception as e:
        raise IngestionError(path, f"unreadable video stream ({codec}): {_first_line(e)}") from e
    if first is None:
        raise IngestionError(path, f"unreadable video stream ({codec}): no frame of {len(pts)} can be decoded")
    rotation = int(getattr(first, "rotation", 0) or 0)
    h, w = _upright(first).shape[:2]
    return VideoInfo(path, file_hash(path), w, h, len(pts), fps, codec, container, ts, rotation, demux_error)


def _decode_frames(container, stream, path: Path, codec: str, errors: list[str] | None) -> Iterator:
    """Frames of ``stream`` in presentation order; a packet the decoder rejects is skipped (its error kept in
    ``errors``) instead of ending the file. Raises only if the demuxer itself fails before any frame."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.EOFError:
            return
        except Exception as e:  # the container breaks off (truncated tail): what came before stands
            if errors is not None:
                errors.append(f"demux: {_first_line(e)}")
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as e:  # InvalidDataError and friends: this packet is damaged
            if errors is not None:
                errors.append(f"packet pts {packet.pts}: {_first_line(e)}")
            continue
        yield from frames


HOLD_SECONDS = 0.5  # the longest a source frame is repeated to fill a gap when resampling by time


def select_frames(
    info: VideoInfo, target_fps: float | None = None, stride: int = 1, max_frames: int | None = None
) -> tuple[np.ndarray, float]:
    """Source frame indices to keep (non-decreasing) and the resulting frame rate.

    Resampling uses the frames' presentation times from the container (variable frame rate safe):
    for each output time on a ``target_fps`` grid, the nearest earlier-or-equal source frame, held for
    at most ``HOLD_SECONDS`` (or two frame intervals, if longer): across a longer gap in the source (a
    2-frame file whose second frame is stamped 10 hours later) nothing is invented. ``max_frames``
    bounds the result whatever length the container declares: a longer selection is subsampled evenly
    (its stride multiplied by the smallest integer that fits), so the whole clip is still covered.
    """
    n = info.n_source_frames
    fps = info.source_fps
    if target_fps is not None:
        ts = info.timestamps if len(info.timestamps) == n else np.arange(n) / fps
        ts = ts - ts[0]
        hold = max(HOLD_SECONDS, 2.0 / target_fps, 2.0 / fps)
        ends = np.minimum(np.append(ts[1:], ts[-1] + 1e-6), ts + hold)  # the grid spans [first, last] frame time
        first = np.ceil(ts * target_fps - 1e-6).astype(
            np.int64
        )  # output slots k (time k / target_fps) each frame covers
        last = np.ceil(ends * target_fps - 1e-6).astype(np.int64)  # exclusive
        count = np.maximum(last - first, 0)
        idx = np.repeat(np.arange(n), count)
        fps = float(target_fps)
    else:
        idx = np.arange(n)
    idx = idx[::stride]
    fps = fps / stride
    extra = max_frames_stride(len(idx), max_frames)
    return idx[::extra].astype(np.int64), fps / extra


def max_frames_stride(n: int, max_frames: int | None) -> int:
    """The stride that brings ``n`` selected frames down to at most ``max_frames`` (1: no subsampling)."""
    return 1 if max_frames is None or n <= max_frames else -(-n // max_frames)


@dataclass
class DecodeReport:
    """What a decode pass could not read: frame positions (into the selected indices) and the decoder's words."""

    missing_positions: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def iter_batches(
    path: str | Path,
    indices: np.ndarray,
    batch: int = 32,
    codec: str = "",
    info: VideoInfo | None = None,
    report: DecodeReport | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(positions [b], frames u8 [b, H, W, 3])``: the frames of source ``indices`` (non-decreasing),
    upright, ``batch`` at a time, with each one's position in ``indices``. A frame that cannot be decoded is
    left out (its position goes to ``report.missing_positions``); the others still come."""

    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) and np.any(np.diff(indices) < 0):
        raise ValueError(f"{path}: frame indices must be non-decreasing")
    ts = info.timestamps if info is not None and len(info.timestamps) == info.n_source_frames else None
    errors: list[str] = []
    seen = np.zeros(len(indices), dtype=bool)
    pos_buf: list[int] = []
    frame_buf: list[np.ndarray] = []
    try:
        c, s = _open(path)
    except Exception as e:
        raise IngestionError(path, f"unreadable video stream ({codec}): {_first_line(e)}") from e
    last = int(indices[-1]) if len(indices) else -1
    with c:
        time_base = float(s.time_base) if s.time_base else None
        counter = -1
        for frame in _decode_frames(c, s, path, codec, errors):
            counter += 1
            source = counter
            if ts is not None and frame.pts is not None and time_base:  # by time: a lost frame does not shift the rest
                t = frame.pts * time_base
                j = int(np.searchsorted(ts, t))
                source = j if j < len(ts) and (j == 0 or ts[j] - t < t - ts[j - 1]) else j - 1
            if source > last:
                break
            lo, hi = np.searchsorted(indices, source, "left"), np.searchsorted(indices, source, "right")
            if lo == hi:
                continue
            rgb = _upright(frame)
            for p in range(lo, hi):
                if not seen[p]:
                    seen[p] = True
                    pos_buf.append(p)
                    frame_buf.append(rgb)
            if len(pos_buf) >= batch:
                yield np.asarray(pos_buf[:batch]), np.stack(frame_buf[:batch])
                pos_buf, frame_buf = pos_buf[batch:], frame_buf[batch:]
    if pos_buf:
        yield np.asarray(pos_buf), np.stack(frame_buf)
    if report is not None:
        report.missing_positions.extend(int(p) for p in np.flatnonzero(~seen))
        report.errors.extend(errors)
    if len(indices) and not seen.any():
        raise IngestionError(
            path,
            f"unreadable video stream ({codec}): none of {len(indices)} selected frames can be decoded"
            + (f" ({errors[0]})" if errors else ""),
        )


def read_frames(
    path: str | Path, indices: np.ndarray | None = None, info: VideoInfo | None = None, batch: int = 64
) -> np.ndarray:
    """Frames ``indices`` (default: all) as one array ``u8 [T, H, W, 3]``; raises ``IngestionError`` if any cannot be
    decoded (for callers that need every frame, e.g. synthetic videos whose ground truth is per frame)."""
    info = info or probe(path)
    idx = np.arange(info.n_source_frames) if indices is None else np.asarray(indices)
    report = DecodeReport()
    frames = np.concatenate([f for _, f in iter_batches(path, idx, batch, info.codec, info, report)])
    if report.missing_positions:
        raise IngestionError(
            Path(path),
            f"frames {idx[report.missing_positions[:5]].tolist()} cannot be decoded ({'; '.join(report.errors[:2])})",
        )
    return frames
