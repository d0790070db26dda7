"""Every file FFmpeg can read decodes (PyAV): AV1, animated GIF (also under an .mp4 name), tiny frame sizes,
variable frame rate, rotation metadata; a damaged middle loses those frames, not the file, and ingestion records
them."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from pipeline_tasks.ingest import IngestConfig, ingest_video
from pipeline_tasks.ingest.decode import DecodeReport, iter_batches, probe, read_frames, select_frames
from tests.pipeline_tasks.ingest.clips import animate_astronaut

T = 30


def _write(path, frames, codec="libx264", fps=25, pix_fmt="yuv420p", options=None, rotation=None, pts_ms=None):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if options:
            s.options = options
        if rotation is not None:
            s.set_display_rotation(rotation)
        if pts_ms is not None:
            s.codec_context.time_base = fractions.Fraction(1, 1000)
        for k, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts_ms is not None:
                vf.pts, vf.time_base = pts_ms[k], fractions.Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _counter(size=64, n=T):
    """Frame t is uniformly 8·t: a decoded frame says which source frame it is."""
    return np.stack([np.full((size, size, 3), 8 * t, np.uint8) for t in range(n)])


def _which(frames):
    return np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int)


def test_av1_decodes(tmp_path):
    path = _write(tmp_path / "av1.mp4", _counter(), codec="libsvtav1", options={"preset": "12"})
    info = probe(path)
    assert info.n_source_frames == T and (info.width, info.height) == (64, 64)
    assert "av1" in info.codec or "dav1d" in info.codec
    assert list(_which(read_frames(path))) == list(range(T))


def test_animated_gif_decodes_under_either_name(tmp_path):
    gif = _write(tmp_path / "anim.gif", _counter(), codec="gif", fps=10, pix_fmt="rgb8")
    disguised = tmp_path / "anim_really_a_gif.mp4"
    disguised.write_bytes(gif.read_bytes())
    for path in (gif, disguised):
        info = probe(path)
        assert info.codec == "gif" and info.n_source_frames == T and info.source_fps == pytest.approx(10.0)
        np.testing.assert_allclose(info.timestamps[:3], [0.0, 0.1, 0.2])
        assert np.abs(_which(read_frames(path)) - np.arange(T)).max() <= 1  # rgb8 palette quantises the grey levels


@pytest.mark.parametrize("size", [16, 24, 48, 72])
def test_small_frames_keep_their_shape_and_colour(tmp_path, size):
    frames = np.zeros((8, size, size, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 100, 30
    out = read_frames(_write(tmp_path / f"s{size}.mp4", frames))
    assert out.shape == (8, size, size, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [200, 100, 30], atol=3)


def test_rotation_metadata_turns_frames_upright(tmp_path):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :16, 0] = 255  # landscape, a red band on the left
    path = _write(tmp_path / "rot.mp4", np.stack([img] * 4), rotation=90)
    info = probe(path)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    frame = read_frames(path)[0]
    assert frame.shape == (64, 48, 3)
    # displayed turned 90° counter-clockwise (the display matrix): the left edge ends at the bottom
    assert frame[-12:, :, 0].mean() > 200 and frame[:40, :, 0].mean() < 20


def test_variable_frame_rate_is_resampled_by_time(tmp_path):
    pts = [0, 40, 80, 200, 240, 3_600_000]  # ms: a 120 ms gap, then one frame an hour later
    frames = np.stack([np.full((32, 32, 3), 40 * k, np.uint8) for k in range(len(pts))])
    info = probe(_write(tmp_path / "vfr.mp4", frames, pts_ms=pts))
    np.testing.assert_allclose(info.timestamps - info.timestamps[0], np.array(pts) / 1000)
    idx, fps = select_frames(info, target_fps=25.0)
    assert fps == 25.0
    # slots every 40 ms: frame 2 is held across the short gap; frame 4 for HOLD_SECONDS (0.5 s), not for the hour
    assert list(idx) == [0, 1, 2, 2, 2, 3] + [4] * 13 + [5]
    idx, fps = select_frames(info, target_fps=25.0, max_frames=3)  # 20 slots → every 7th
    assert list(idx) == [0, 4, 4] and fps == 25.0 / 7


def _damage_middle(src, dst, lo=0.45, hi=0.55, seed=0):
    b = bytearray(src.read_bytes())
    i, j = b.find(b"mdat"), b.find(b"moov")
    assert 0 < i < j, "libx264 mp4 layout changed: mdat before moov expected"
    a0, a1 = i + int((j - i) * lo), i + int((j - i) * hi)
    b[a0:a1] = np.random.default_rng(seed).integers(0, 256, a1 - a0, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(b))
    return dst


def test_a_damaged_middle_loses_those_frames_not_the_file(tmp_path):
    good = _write(tmp_path / "good.mp4", _counter(), options={"g": "1", "crf": "18"})  # intra only: damage stays local
    path = _damage_middle(good, tmp_path / "damaged.mp4")
    info = probe(path)
    report = DecodeReport()
    out = list(iter_batches(path, np.arange(T), 8, info.codec, info, report))
    positions = np.concatenate([p for p, _ in out])
    frames = np.concatenate([f for _, f in out])
    assert 0 < len(report.missing_positions) < T // 2 and report.errors
    assert sorted(set(positions) | set(report.missing_positions)) == list(range(T))
    after = positions > max(report.missing_positions)
    assert after.any() and list(_which(frames[after])) == list(positions[after])  # later frames keep their own index


def test_ingestion_records_damaged_frames_and_keeps_the_rest(tmp_path):
    clip = animate_astronaut(tmp_path / "a.mp4", n_frames=24, size=128)
    frames = read_frames(clip.path)
    good = _write(tmp_path / "intra.mp4", frames, options={"g": "1", "crf": "18"})
    path = _damage_middle(good, tmp_path / "damaged_astronaut.mp4", 0.40, 0.50)
    res = ingest_video(path, 64, IngestConfig(segmentation=False, min_usable_frames=4))
    q = res.quality
    assert q["damaged_frames"] > 0 and len(res) == 24 - q["damaged_frames"]
    assert set(q["damaged_source_frames"]).isdisjoint(res.frame_indices) and q["decode_errors"]
    # frames partly hit by the damage decode concealed and may be flagged; those before and after are the astronaut
    assert res.usable[:8].all() and res.usable[-4:].all() and q["n_usable"] >= 15
