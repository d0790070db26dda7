"""Decoding (frame selection, batches, hash), input expansion, smoothing, and the face-alignment backend's offline
check."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_tasks.face import FaceBackendUnavailable, make_face_analyzer
from pipeline_tasks.ingest import IngestionError, OneEuroConfig, expand_video_inputs
from pipeline_tasks.ingest.decode import file_hash, iter_batches, probe, select_frames
from pipeline_tasks.ingest.smoothing import fill_gaps, one_euro
from tests.pipeline_tasks.ingest.clips import write_mp4


@pytest.fixture(scope="module")
def counter_clip(tmp_path_factory):
    """30 frames at 25 fps whose brightness encodes the frame number (8·t)."""
    frames = np.stack([np.full((32, 32, 3), 8 * t, np.uint8) for t in range(30)])
    return write_mp4(tmp_path_factory.mktemp("dec") / "counter.mp4", frames)


def _decode(path, idx, batch):
    out = list(iter_batches(path, idx, batch, info=probe(path)))
    positions = np.concatenate([p for p, _ in out])
    assert list(positions) == list(range(len(idx)))  # every selected frame, in order
    return np.concatenate([b for _, b in out])


def test_probe_and_batched_decode(counter_clip):
    info = probe(counter_clip)
    assert (info.width, info.height, info.n_source_frames, info.source_fps) == (32, 32, 30, 25.0)
    assert info.sha256 == file_hash(counter_clip) and len(info.sha256) == 64
    idx, fps = select_frames(info)
    frames = _decode(counter_clip, idx, batch=7)  # batches of 7 must stitch in order
    assert frames.shape == (30, 32, 32, 3)
    np.testing.assert_allclose(frames.reshape(30, -1).mean(1), 8 * np.arange(30), atol=3)


def test_resample_stride_and_max_frames(counter_clip):
    info = probe(counter_clip)
    idx, fps = select_frames(info, target_fps=12.5)
    assert fps == 12.5 and list(idx[:5]) == [0, 2, 4, 6, 8] and len(idx) == 15
    idx, fps = select_frames(info, target_fps=12.5, stride=2, max_frames=8)  # 8 frames: within the limit
    assert fps == 6.25 and list(idx) == [0, 4, 8, 12, 16, 20, 24, 28]
    # over the limit: subsampled evenly over the whole clip (stride ×2), not cut after the first 4
    idx, fps = select_frames(info, target_fps=12.5, stride=2, max_frames=4)
    assert fps == 3.125 and list(idx) == [0, 8, 16, 24]
    frames = _decode(counter_clip, idx, batch=3)
    np.testing.assert_allclose(frames.reshape(4, -1).mean(1), 8 * np.array([0, 8, 16, 24]), atol=3)
    idx, fps = select_frames(info, max_frames=7)  # 30 frames → stride 5 → 6 frames spanning the clip
    assert fps == 5.0 and list(idx) == [0, 5, 10, 15, 20, 25]
    idx, fps = select_frames(info, target_fps=50.0)  # upsampling repeats frames
    assert fps == 50.0 and list(idx[:4]) == [0, 0, 1, 1]


def test_expand_video_inputs(tmp_path, counter_clip):
    (tmp_path / "sub").mkdir()
    for name in ["b.mp4", "a.MOV", "sub/c.mkv"]:
        (tmp_path / name).write_bytes(counter_clip.read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in expand_video_inputs(tmp_path)] == ["a.MOV", "b.mp4", "c.mkv"]
    assert [p.name for p in expand_video_inputs(str(tmp_path / "*.mp4"))] == ["b.mp4"]
    assert [p.name for p in expand_video_inputs([tmp_path / "b.mp4", str(tmp_path / "**" / "*.mkv")])] == [
        "b.mp4",
        "c.mkv",
    ]
    with pytest.raises(IngestionError, match="nothing.mp4: file not found"):
        expand_video_inputs(tmp_path / "nothing.mp4")
    with pytest.raises(IngestionError, match=r"\*\.avi: the pattern matches no file"):
        expand_video_inputs(str(tmp_path / "*.avi"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestionError, match="empty: no video files"):
        expand_video_inputs(tmp_path / "empty")


def test_one_euro_removes_jitter_without_lag():
    t = np.arange(100) / 25.0
    truth = 0.2 * np.sin(2 * np.pi * 0.3 * t)
    noisy = truth + np.random.default_rng(0).normal(0, 0.01, t.shape)
    out = one_euro(noisy[:, None], 25.0, OneEuroConfig())[:, 0]
    rms = lambda x: np.sqrt(np.mean(x[5:-5] ** 2))  # noqa: E731
    print(f"one-euro rms error {rms(out - truth):.4f} vs noise {rms(noisy - truth):.4f}")
    assert rms(out - truth) < 0.6 * rms(noisy - truth)  # jitter cut by ≥ 40 % (measured ≈ 47 %)
    lag = np.argmax(np.correlate(out - out.mean(), truth - truth.mean(), "full")) - (len(t) - 1)
    assert lag == 0
    assert np.array_equal(one_euro(noisy[:, None], 25.0, OneEuroConfig(enabled=False))[:, 0], noisy)
    filled = fill_gaps(np.array([[0.0], [np.nan], [2.0], [np.nan]]), np.array([True, False, True, False]))
    np.testing.assert_allclose(filled[:, 0], [0, 1, 2, 2])


def test_face_alignment_backend_refuses_without_local_weights(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FaceBackendUnavailable) as ei:
        make_face_analyzer("face_alignment", landmarks="2d", detector="sfd")
    msg = str(ei.value)
    assert (
        "2DFAN4" in msg and "s3fd" in msg and str(tmp_path / "hub" / "checkpoints") in msg and "never downloads" in msg
    )
    assert not (tmp_path / "hub" / "checkpoints").exists() or not any((tmp_path / "hub" / "checkpoints").iterdir())
    with pytest.raises(FaceBackendUnavailable, match="unknown face backend 'dlib'"):
        make_face_analyzer("dlib")
