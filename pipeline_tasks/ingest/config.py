"""Typed configuration of real-video ingestion (nested into stage 3's PseudoMVConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OneEuroConfig(_Strict):
    """One-Euro filter (Casiez et al. 2012) on signals normalised by the face size.

    Low ``min_cutoff`` removes jitter when the head is still; ``beta`` raises the cutoff with speed
    so fast motion is followed without lag. Speeds are in face-sizes (or radians) per second.
    """

    enabled: bool = True
    min_cutoff: float = Field(1.0, gt=0)  # Hz
    beta: float = Field(2.0, ge=0)
    d_cutoff: float = Field(1.0, gt=0)  # Hz, for the derivative


class IngestConfig(_Strict):
    """How a user's video becomes aligned frames, masks and cameras."""

    # decoding
    target_fps: float | None = Field(None, gt=0)  # resample to this rate (nearest frame); None keeps the source rate
    frame_stride: int = Field(1, ge=1)  # then keep every n-th frame
    # a longer video is subsampled evenly to at most this many frames (a larger stride over the whole clip,
    # recorded in the group's quality as max_frames_stride); None: no limit
    max_frames: int | None = Field(5000, ge=1)
    decode_batch: int = Field(32, ge=1)  # frames decoded per batch handed on
    # face analysis
    backend: Literal["mediapipe", "face_alignment"] = "mediapipe"
    face_alignment_landmarks: Literal["2d", "3d"] = "2d"
    face_alignment_detector: Literal["sfd", "blazeface"] = "sfd"
    detector_range: Literal["short", "full"] = "full"  # mediapipe face detector model (short: faces within ~2 m)
    max_faces: int = Field(4, ge=1)  # faces looked for per frame; one person is tracked (the largest at the start)
    track_gate: float = Field(0.6, gt=0)  # the tracked face moves at most this many face sizes from its last box
    analysis_max_side: int = Field(640, ge=64)  # frames are analysed downscaled to this longest side (speed)
    # quality
    min_face_score: float = Field(0.5, ge=0, le=1)  # below: flagged LOW_CONFIDENCE (unusable)
    max_jump: float = Field(0.25, gt=0)  # crop centre/size change between frames, in crop sizes: LARGE_JUMP
    min_usable_frames: int = Field(8, ge=1)  # fewer usable frames → VideoSkipped
    min_usable_fraction: float = Field(0.5, ge=0, le=1)
    # alignment, mask and camera
    border: Literal["replicate", "reflect", "constant"] = "replicate"  # fill where the crop leaves the frame
    segmentation: bool = True  # mediapipe selfie segmentation for alpha; False → alpha 255 everywhere
    segmentation_model: Literal[0, 1] = 0  # 0 general (square), 1 landscape
    crop_smoothing: OneEuroConfig = OneEuroConfig()
    camera_smoothing: OneEuroConfig = OneEuroConfig(min_cutoff=1.5, beta=5.0)  # speeds in rad/s and world units/s
