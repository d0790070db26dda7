"""Real video ingestion (issue 6): user mp4 → aligned frames, alpha, estimated cameras, quality flags.

Stage 3 uses ``expand_video_inputs``, then per video ``analyse_video`` (pass 1: faces, flags, cameras) and
``iter_aligned`` (pass 2: aligned crops and masks, a chunk at a time). ``ingest_video`` / ``ingest_videos`` /
``iter_ingest`` hold whole videos in memory (tests, short clips), with an optional ``motion_fn``.
"""

from pipeline_tasks.ingest.camera import head_pose_angles
from pipeline_tasks.ingest.config import IngestConfig, OneEuroConfig
from pipeline_tasks.ingest.errors import IngestionError, VideoSkipped
from pipeline_tasks.ingest.pipeline import (
    CROP_PADDED,
    FLAG_NAMES,
    LARGE_JUMP,
    LOW_CONFIDENCE,
    MULTIPLE_FACES,
    NO_FACE,
    PNP_FAILED,
    TRACK_LOST,
    UNUSABLE,
    IngestAnalysis,
    IngestResult,
    analyse_video,
    expand_video_inputs,
    ingest_video,
    ingest_videos,
    iter_aligned,
    iter_ingest,
    make_analyzer,
)

__all__ = [
    "CROP_PADDED",
    "FLAG_NAMES",
    "LARGE_JUMP",
    "LOW_CONFIDENCE",
    "MULTIPLE_FACES",
    "NO_FACE",
    "PNP_FAILED",
    "TRACK_LOST",
    "UNUSABLE",
    "IngestAnalysis",
    "IngestConfig",
    "IngestResult",
    "IngestionError",
    "OneEuroConfig",
    "VideoSkipped",
    "analyse_video",
    "expand_video_inputs",
    "head_pose_angles",
    "ingest_video",
    "ingest_videos",
    "iter_aligned",
    "iter_ingest",
    "make_analyzer",
]
