"""Real video ingestion (issue 6): user mp4 → aligned frames, alpha, estimated cameras, quality flags.

Stage 3 uses ``expand_video_inputs`` then ``ingest_videos`` / ``iter_ingest`` (or ``ingest_video``),
running its motion encoder through ``motion_fn``.
"""

from pipeline_tasks.ingest.camera import head_pose_angles
from pipeline_tasks.ingest.config import IngestConfig, OneEuroConfig
from pipeline_tasks.ingest.errors import IngestionError, VideoSkipped
from pipeline_tasks.ingest.pipeline import (
    CROP_PADDED, FLAG_NAMES, LARGE_JUMP, LOW_CONFIDENCE, MULTIPLE_FACES, NO_FACE, PNP_FAILED, UNUSABLE,
    IngestResult, expand_video_inputs, ingest_video, ingest_videos, iter_ingest,
)

__all__ = [
    "CROP_PADDED", "FLAG_NAMES", "LARGE_JUMP", "LOW_CONFIDENCE", "MULTIPLE_FACES", "NO_FACE", "PNP_FAILED", "UNUSABLE",
    "IngestConfig", "IngestResult", "IngestionError", "OneEuroConfig", "VideoSkipped", "expand_video_inputs",
    "head_pose_angles", "ingest_video", "ingest_videos", "iter_ingest",
]
