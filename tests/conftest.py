"""Test-wide settings: offline, quiet Prefect, an artifact root per test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("MPLBACKEND", "Agg")

import models  # noqa: E402,F401  (torchvision CPU shim before anything imports torchvision)
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def registry(tmp_path, monkeypatch):
    from storage_schemas.artifacts import ArtifactRegistry

    root = tmp_path / "artifacts"
    monkeypatch.setenv("P4D_HOME", str(root))
    return ArtifactRegistry(root)
