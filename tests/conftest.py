"""Test-wide settings: offline, quiet Prefect, an artifact root per test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402,F401  (torchvision CPU shim before anything imports torchvision)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def registry(tmp_path, monkeypatch):
    from storage_schemas.artifacts import ArtifactRegistry

    root = tmp_path / "artifacts"
    monkeypatch.setenv("P4D_HOME", str(root))
    return ArtifactRegistry(root)


@pytest.fixture
def flow_in_subprocess(tmp_path):
    """``run(code, arg, env=None) → stdout lines``: Python ``code`` in a fresh interpreter (``sys.argv[1]`` = ``arg``)
    with its own Prefect home and temporary API, as a user's ``python -m flows...`` would run; fails with its stderr."""
    import subprocess
    import sys

    def run(code: str, arg: str, env: dict[str, str] | None = None, timeout: int = 240) -> list[str]:
        full = {
            **os.environ,
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "HF_HUB_OFFLINE": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "OMP_NUM_THREADS": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            **(env or {}),
        }
        full.pop("PREFECT_API_URL", None)
        proc = subprocess.run(
            [sys.executable, "-c", code, arg], capture_output=True, text=True, env=full, timeout=timeout
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.splitlines()

    return run
