"""Fixtures for the ingestion tests (clips from tests/pipeline_tasks/ingest/clips.py)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest

from tests.pipeline_tasks.ingest.clips import AnimatedClip, animate_astronaut, write_mp4


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def astronaut_clip(clip_dir) -> AnimatedClip:
    return animate_astronaut(clip_dir / "astronaut.mp4")


@pytest.fixture(scope="session")
def noise_clip(clip_dir) -> Path:
    rng = np.random.default_rng(0)
    return write_mp4(clip_dir / "noise.mp4", rng.integers(0, 256, (12, 128, 128, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ingest_cache")
