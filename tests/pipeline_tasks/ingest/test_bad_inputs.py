"""Every bad input gets an error naming the file and the cause; a batch with bad videos converts the good one."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipeline_tasks.ingest import IngestConfig, IngestionError, VideoSkipped, ingest_video, ingest_videos
from pipeline_tasks.ingest.decode import read_frames
from tests.pipeline_tasks.ingest.clips import animate_astronaut, write_mp4

RES = 128


def _zero_frame_mp4(path):
    with av.open(str(path), "w") as c:  # header written, no frame ever encoded
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    return path


def _zero_frame_mkv(path):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    return path


def _unreadable_stream(path, tmp_path):
    """A valid container whose H.264 payload is noise (the mdat box overwritten)."""
    good = write_mp4(
        tmp_path / "good_for_corruption.mp4", np.random.default_rng(1).integers(0, 255, (10, 64, 64, 3), dtype=np.uint8)
    )
    b = bytearray(good.read_bytes())
    i, j = b.find(b"mdat"), b.find(b"moov")
    assert 0 < i < j, "libx264 mp4 layout changed: mdat before moov expected"
    b[i + 4 : j - 4] = np.random.default_rng(2).integers(0, 256, j - 8 - i, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(b))
    return path


def _make(kind, tmp_path):
    p = tmp_path / f"{kind}.mp4"
    if kind == "missing":
        return p
    if kind == "text":
        p.write_text("this is a text file, not a video\n" * 50)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "zero_frames":
        _zero_frame_mp4(p)
    elif kind == "zero_frames_mkv":
        p = _zero_frame_mkv(tmp_path / "zero_frames.mkv")
    elif kind == "unreadable":
        _unreadable_stream(p, tmp_path)
    elif kind == "truncated":
        good = write_mp4(tmp_path / "to_truncate.mp4", np.zeros((10, 64, 64, 3), np.uint8))
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return p


@pytest.mark.parametrize(
    "kind, cause",
    [
        ("missing", "file not found"),
        ("text", "not a video"),
        ("empty", "empty"),
        ("truncated", ("truncated", "cannot be read")),  # depends where the cut falls
        ("zero_frames", "zero frames"),
        ("zero_frames_mkv", "zero frames"),
        ("unreadable", "unreadable video stream"),
    ],
)
def test_bad_file_error_names_file_and_cause(kind, cause, tmp_path):
    p = _make(kind, tmp_path)
    with pytest.raises(IngestionError) as ei:
        ingest_video(p, RES, IngestConfig(segmentation=False))
    e = ei.value
    assert isinstance(e, ValueError) and not isinstance(e, VideoSkipped)
    causes = (cause,) if isinstance(cause, str) else cause
    assert str(p) in str(e) and any(c in str(e) for c in causes), str(e)
    assert e.path == str(p)


def test_faceless_video_is_skipped_with_reason(noise_clip, tmp_path):
    with pytest.raises(VideoSkipped) as ei:
        ingest_video(noise_clip, RES, IngestConfig(segmentation=False), cache_dir=tmp_path)
    msg = str(ei.value)
    assert str(noise_clip) in msg and "too few usable frames: 0 of 12" in msg and "no face" in msg
    # the skip is cached: a re-run answers at once with the same reason
    with pytest.raises(VideoSkipped, match="cached"):
        ingest_video(noise_clip, RES, IngestConfig(segmentation=False), cache_dir=tmp_path)


def test_partly_faceless_video_threshold(tmp_path):
    """Half the frames without a face: usable with min_usable_fraction 0.4, skipped with 0.6."""
    clip = animate_astronaut(tmp_path / "a.mp4", n_frames=12, size=128)
    frames = read_frames(clip.path)[:12]
    frames[6:] = np.random.default_rng(0).integers(0, 256, frames[6:].shape, dtype=np.uint8)
    mixed = write_mp4(tmp_path / "mixed.mp4", frames)
    res = ingest_video(mixed, 64, IngestConfig(segmentation=False, min_usable_frames=4, min_usable_fraction=0.4))
    assert res.usable[:5].all() and not res.usable[7:].any()
    assert res.quality["n_usable"] < 12 and res.subset(res.usable).frames.shape[0] == res.quality["n_usable"]
    with pytest.raises(VideoSkipped, match="too few usable frames"):
        ingest_video(mixed, 64, IngestConfig(segmentation=False, min_usable_frames=4, min_usable_fraction=0.6))


def test_batch_converts_good_videos_and_records_bad_ones(tmp_path, noise_clip):
    good = animate_astronaut(tmp_path / "good.mp4", n_frames=10, size=128).path
    missing, text = _make("missing", tmp_path), _make("text", tmp_path)
    cfg = IngestConfig(segmentation=False, min_usable_frames=4)
    results, skipped = ingest_videos([missing, good, noise_clip, text], RES, cfg, cache_dir=tmp_path / "cache")
    assert list(results) == [str(good)]
    assert results[str(good)].frames.shape == (10, RES, RES, 3)
    assert set(skipped) == {str(missing), str(noise_clip), str(text)}
    assert "file not found" in skipped[str(missing)]
    assert "too few usable frames" in skipped[str(noise_clip)]
    assert "not a video" in skipped[str(text)]
    # nothing converted is lost: the good one is cached and comes back without work
    results2, _ = ingest_videos([good], RES, cfg, cache_dir=tmp_path / "cache")
    assert results2[str(good)].from_cache
