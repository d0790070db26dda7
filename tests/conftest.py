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


@pytest.fixture(scope="module")
def s3_server():
    """An S3-compatible server on 127.0.0.1 (moto's server mode) with a bucket ``bucket``; AWS_* set to reach it
    while the module runs. Yields those variables (for subprocesses)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.2)
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fsspec

    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("bucket")
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(10)
