"""Ingestion of a real face (skimage astronaut) animated with known roll, scale and shift."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from models import cameras as cams
from pipeline_tasks.face import make_face_analyzer
from pipeline_tasks.face.canonical import PNP_POINTS, canonical_crop_points, template_world
from pipeline_tasks.ingest import NO_FACE, IngestConfig, head_pose_angles, ingest_video
from pipeline_tasks.ingest import pipeline as ingest_pipeline
from pipeline_tasks.ingest.camera import pose_to_label

RES = 256
EYE_JITTER_RMS_PX = 0.5  # at 256²: RMS of x_t − (x_{t−1} + x_{t+1})/2 of the true eye centre in the crop
EYE_JITTER_MAX_PX = 1.0
ROLL_TOLERANCE_DEG = 2.5  # |estimated head roll − applied roll − constant offset|, every frame
PHOTO_ROLL_MAX_DEG = 6.0  # the constant offset is the photo's own head roll: small, the astronaut stands upright
MASK_FACE_COVERAGE = 0.95  # fraction of the face-landmark hull with alpha > 127


@pytest.fixture(scope="module")
def ingested(astronaut_clip, cache_dir):
    return ingest_video(astronaut_clip.path, RES, IngestConfig(), cache_dir=cache_dir)


@pytest.fixture(scope="module")
def photo_eye_centre():
    """The eye centre in the still photo (continuous pixels), from the same backend."""
    an = make_face_analyzer("mediapipe")
    try:
        face = an.faces(data.astronaut())[0]
    finally:
        an.close()
    return face.points(("right_eye", "left_eye")).mean(0)


def test_face_found_in_every_frame(ingested, astronaut_clip):
    assert len(ingested) == len(astronaut_clip.roll_degrees)
    assert not (ingested.flags & NO_FACE).any()
    assert ingested.usable.all(), ingested.quality["flag_counts"]
    assert ingested.frames.shape == (len(ingested), RES, RES, 3) and ingested.frames.dtype == np.uint8
    assert ingested.alpha.shape == (len(ingested), RES, RES) and ingested.cameras.shape == (len(ingested), 25)
    assert ingested.camera_source == "estimated" and len(ingested.source_hash) == 64


def test_aligned_crops_are_stable(ingested, astronaut_clip, photo_eye_centre):
    # true eye centre in each frame (applied transform), mapped into the aligned crop
    eye_t = np.einsum("tij,j->ti", astronaut_clip.matrices, np.r_[photo_eye_centre - 0.5, 1.0]) + 0.5
    q = (eye_t - ingested.crop[:, :2]) / ingested.crop[:, 2:3] * RES
    jitter = np.linalg.norm(q[1:-1] - 0.5 * (q[:-2] + q[2:]), axis=-1)
    print(f"eye-centre jitter rms {np.sqrt((jitter**2).mean()):.3f} px, max {jitter.max():.3f} px at {RES}²")
    assert np.sqrt((jitter**2).mean()) < EYE_JITTER_RMS_PX and jitter.max() < EYE_JITTER_MAX_PX
    # and the framing is the canonical one: eye centre near its canonical position, eye distance near canonical
    canon = canonical_crop_points(("right_eye", "left_eye")) * RES
    kp_eyes = ingested.keypoints[:, :2] * RES
    assert np.abs(np.median(kp_eyes.mean(1), 0) - canon.mean(0)).max() < 0.04 * RES
    iod = np.linalg.norm(kp_eyes[:, 0] - kp_eyes[:, 1], axis=-1)
    assert np.abs(iod / np.linalg.norm(canon[0] - canon[1]) - 1).max() < 0.15


def test_roll_follows_applied_rotation(ingested, astronaut_clip):
    roll = head_pose_angles(ingested.cameras)[:, 2]
    resid = roll - astronaut_clip.roll_degrees
    offset = resid.mean()
    print(f"roll: photo offset {offset:.2f}°, max deviation {np.abs(resid - offset).max():.2f}°")
    assert abs(offset) < PHOTO_ROLL_MAX_DEG
    assert np.abs(resid - offset).max() < ROLL_TOLERANCE_DEG


def test_cameras_reproject_the_face_in_project_convention(ingested):
    # project the canonical face with models.cameras (the project's renderer-side code) through the estimated cameras
    label = torch.from_numpy(ingested.cameras)
    pts = torch.from_numpy(template_world(PNP_POINTS)).float()[None].expand(len(label), -1, -1)
    uv, z = cams.project(pts, label)
    idx = [ingest_pipeline.KEYPOINT_NAMES.index(n) for n in PNP_POINTS]
    err = (uv.numpy() - ingested.keypoints[:, idx]).__abs__().max()
    print(f"max reprojection error {err * RES:.2f} px, mean {ingested.quality['mean_reprojection_px']:.2f} px")
    assert err < 0.06 and (z > 0).all()
    radius = np.linalg.norm(ingested.cameras[:, [3, 7, 11]], axis=-1)
    assert ((radius > 3.6) & (radius < 4.8)).all()  # the aligned framing puts the camera near the canonical 4.2


def test_pose_label_matches_project_cameras():
    frontal = pose_to_label(np.zeros(3), np.array([0.0, 0.0, cams.DEFAULT_RADIUS]))
    np.testing.assert_allclose(frontal, cams.orbit_label(0.0, 0.0, cams.DEFAULT_RADIUS)[0].numpy(), atol=1e-5)
    # a rotated head seen by the frontal camera: angles come back out
    yaw, pitch, roll = 0.3, -0.2, 0.25
    r_head = cams.rotation_yaw_pitch_roll(yaw, pitch, roll)[0].numpy().astype(np.float64)
    label = pose_to_label(cv2.Rodrigues(r_head)[0].ravel(), np.array([0.0, 0.0, 4.2]))
    np.testing.assert_allclose(head_pose_angles(label)[0], np.degrees([yaw, pitch, roll]), atol=1e-3)


def test_mask_covers_the_face(ingested):
    cover = []
    for t in range(0, len(ingested), 4):
        kp = ingested.keypoints[t] * RES
        hull = np.zeros((RES, RES), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(kp.astype(np.float32)).astype(np.int32), 1)
        cover.append((ingested.alpha[t][hull > 0] > 127).mean())
    assert min(cover) > MASK_FACE_COVERAGE
    assert (ingested.alpha > 127).mean() < 0.85  # not trivially everything: background stays out


def test_cache_hit_skips_work(ingested, astronaut_clip, cache_dir, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("recomputed despite a cache entry")

    monkeypatch.setattr(ingest_pipeline, "_analyse", boom)
    again = ingest_video(astronaut_clip.path, RES, IngestConfig(), cache_dir=cache_dir)
    assert again.from_cache and not ingested.from_cache
    np.testing.assert_array_equal(again.frames, ingested.frames)
    np.testing.assert_array_equal(again.cameras, ingested.cameras)
    assert again.quality == ingested.quality
    # a different ingestion config is a different cache entry (it would recompute)
    with pytest.raises(AssertionError, match="recomputed"):
        ingest_video(astronaut_clip.path, RES, IngestConfig(max_jump=0.3), cache_dir=cache_dir)


def test_motion_hook(ingested, astronaut_clip, cache_dir):
    res = ingest_video(
        astronaut_clip.path,
        RES,
        IngestConfig(),
        cache_dir=cache_dir,
        motion_fn=lambda f: f.reshape(len(f), -1)[:, :5].astype(np.float32),
    )
    assert res.motion.shape == (len(res), 5)
    np.testing.assert_array_equal(res.motion, res.frames.reshape(len(res), -1)[:, :5])
    with pytest.raises(ValueError, match="astronaut.mp4.*motion_fn returned shape"):
        ingest_video(
            astronaut_clip.path, RES, IngestConfig(), cache_dir=cache_dir, motion_fn=lambda f: np.zeros((3, 2))
        )


def test_largest_face_is_tracked(tmp_path):
    """Two copies of the photo, a small face left and a large one right: the crop follows the large one."""
    from pipeline_tasks.ingest import MULTIPLE_FACES
    from tests.pipeline_tasks.ingest.clips import FACE_CENTRE, write_mp4

    img = data.astronaut()
    canvas = np.full((192, 320, 3), 200, np.uint8)
    for scale, centre in [(0.35, (60, 80)), (0.7, (225, 100))]:
        m = cv2.getRotationMatrix2D(tuple(FACE_CENTRE), 0.0, scale)
        m[:, 2] += np.array(centre) - FACE_CENTRE
        mask = cv2.warpAffine(np.ones(img.shape[:2], np.uint8), m, (320, 192)) > 0
        canvas[mask] = cv2.warpAffine(img, m, (320, 192))[mask]
    path = write_mp4(tmp_path / "two_faces.mp4", np.repeat(canvas[None], 8, axis=0))
    res = ingest_video(path, 64, IngestConfig(segmentation=False, min_usable_frames=4))
    assert res.usable.all()
    assert (res.crop[:, 0] > 160).all(), res.crop  # centred on the right (large) face
    assert (res.flags & MULTIPLE_FACES).any()  # both were seen


def _two_people(sizes_left, sizes_right, hide_left=()):
    """Frames of two copies of the photo side by side, each face scaled per frame; ``hide_left``: frames where
    the left person is gone (background)."""
    from tests.pipeline_tasks.ingest.clips import FACE_CENTRE

    img = data.astronaut()
    frames = []
    for t, (sl, sr) in enumerate(zip(sizes_left, sizes_right)):
        canvas = np.full((192, 384, 3), 200, np.uint8)
        for scale, centre, hidden in [(sl, (96, 100), t in hide_left), (sr, (288, 100), False)]:
            if hidden:
                continue
            m = cv2.getRotationMatrix2D(tuple(FACE_CENTRE), 0.0, scale)
            m[:, 2] += np.array(centre) - FACE_CENTRE
            disc = np.zeros((192, 384), np.uint8)
            cv2.circle(disc, centre, 88, 1, -1)
            canvas[disc > 0] = cv2.warpAffine(img, m, (384, 192))[disc > 0]
        frames.append(canvas)
    return np.stack(frames)


def test_one_person_is_tracked_when_the_larger_face_alternates(tmp_path):
    """Issue 12: two people, the larger face alternating every frame. The crop stays on the first frame's
    largest face throughout (the old rule, "the largest face in every frame", mixed both people in one video);
    frames where that person is gone are flagged TRACK_LOST and unusable, never filled with the other person."""
    from pipeline_tasks.ingest import LARGE_JUMP, MULTIPLE_FACES, TRACK_LOST
    from tests.pipeline_tasks.ingest.clips import write_mp4

    t = 16
    big, small = 0.62, 0.56
    left = [big if k % 2 == 0 else small for k in range(t)]
    right = [small if k % 2 == 0 else big for k in range(t)]
    hide = set(range(8, 12))
    path = write_mp4(tmp_path / "two_people.mp4", _two_people(left, right, hide))
    res = ingest_video(path, 64, IngestConfig(segmentation=False, min_usable_frames=4))
    seen = ~np.isin(np.arange(t), sorted(hide))
    assert (res.flags[seen] & MULTIPLE_FACES).all()  # both people are seen in every frame...
    assert res.usable[seen].all() and (res.crop[seen, 0] < 192).all(), res.crop[
        :, 0
    ]  # ...and only the left one is kept
    assert not (res.flags[seen] & LARGE_JUMP).any()
    assert (res.flags[sorted(hide)] & TRACK_LOST).all() and not res.usable[sorted(hide)].any()
    assert res.quality["flag_counts"]["track_lost"] == len(hide)
