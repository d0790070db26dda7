"""Video decoding with decord, after a PyAV probe that turns failures into clear causes.

Why a probe: decord's own errors are C++ check failures ("cannot find video stream with wanted
index: -1", "Cannot create buffer source"); PyAV reads the container header cheaply and tells
"not a video", "no video stream" and "zero frames" apart. decord then decodes in batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
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
    width: int
    height: int
    n_source_frames: int
    source_fps: float
    codec: str
    container: str


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

    try:
        with av.open(str(path)) as c:
            container = c.format.name
            vs = c.streams.video
            if not c.streams:
                raise IngestionError(path, "zero frames: the container holds no streams at all (nothing was written, or the file is truncated)")
            if not vs:
                kinds = sorted({s.type for s in c.streams}) or ["none"]
                raise IngestionError(path, f"not a video: the container has no video stream (streams: {', '.join(kinds)})")
            s = vs[0]
            codec = s.codec_context.name if s.codec_context else "unknown"
            n_hint, dur = int(s.frames or 0), s.duration
    except IngestionError:
        raise
    except av.error.EOFError as e:  # a header and nothing after it (e.g. Matroska with no frames)
        raise IngestionError(path, f"zero frames: the file ends before any video frame ({_first_line(e)})") from e
    except Exception as e:  # av.error.InvalidDataError and friends
        raise IngestionError(path, f"not a video: the container cannot be read ({_first_line(e)})") from e

    import decord

    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as e:
        if n_hint == 0 and not dur:
            raise IngestionError(path, "zero frames: the video stream is empty") from e
        raise IngestionError(path, f"unreadable video stream ({codec}): decord cannot open it ({_first_line(e)})") from e
    n = len(vr)
    if n == 0:
        raise IngestionError(path, "zero frames: the video stream is empty")
    h, w = _frame_shape(vr, path, codec)
    fps = float(vr.get_avg_fps() or 0.0) or 25.0
    del vr
    return VideoInfo(path, file_hash(path), w, h, n, fps, codec, container)


def _frame_shape(vr, path: Path, codec: str) -> tuple[int, int]:
    try:
        f = vr[0].asnumpy()
    except Exception as e:
        raise IngestionError(path, f"unreadable video stream ({codec}): the first frame cannot be decoded ({_first_line(e)})") from e
    return f.shape[0], f.shape[1]


def select_frames(path: str | Path, n_source: int, source_fps: float, target_fps: float | None = None,
                  stride: int = 1, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Source frame indices to keep and the resulting frame rate.

    Resampling uses the frames' real timestamps (variable frame rate safe): for each output time
    the nearest earlier-or-equal source frame.
    """
    idx = np.arange(n_source)
    fps = source_fps
    if target_fps is not None:
        import decord

        try:
            ts = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1).get_frame_timestamp(idx)[:, 0]
        except Exception:
            ts = idx / source_fps
        times = np.arange(ts[0], ts[-1] + 1e-9, 1.0 / target_fps)
        idx = np.clip(np.searchsorted(ts, times + 1e-6, side="right") - 1, 0, n_source - 1)
        fps = float(target_fps)
    idx = idx[::stride]
    fps = fps / stride
    if max_frames is not None:
        idx = idx[:max_frames]
    return idx.astype(np.int64), fps


def iter_batches(path: str | Path, indices: np.ndarray, batch: int = 32, codec: str = "") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, frames u8 [b, H, W, 3])`` for ``indices`` in order, ``batch`` frames per decord read."""
    import decord

    path = Path(path)
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as e:
        raise IngestionError(path, f"unreadable video stream ({codec}): {_first_line(e)}") from e
    for start in range(0, len(indices), batch):
        sel = indices[start : start + batch]
        try:
            frames = vr.get_batch(sel.tolist()).asnumpy()
        except Exception as e:
            raise IngestionError(
                path, f"unreadable video stream ({codec}): frames {int(sel[0])}–{int(sel[-1])} cannot be decoded ({_first_line(e)})"
            ) from e
        yield start, frames
