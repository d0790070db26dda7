"""Ingestion errors: each names the file and the cause, so a batch can record it and go on."""

from __future__ import annotations

from pathlib import Path


class IngestionError(ValueError):
    """A video cannot be ingested (missing, not a video, no frames, unreadable stream, ...)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class VideoSkipped(IngestionError):
    """A readable video that is not usable (e.g. too few frames with a face); the stage records the reason."""
