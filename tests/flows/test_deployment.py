"""The deployments a user runs: a real Prefect server on 127.0.0.1, the project's prefect.yaml deployed to a process
work pool (as `make server deploy` does), one stage deployment run by a worker to completion, its artifact in the
registry. Bad parameters are refused by the server before any work starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from storage_schemas.artifacts import ArtifactRegistry

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "p4d-test-pool"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "P4D_HOME": str(tmp_path / "artifacts"),
        "P4D_PROJECT_DIR": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{api}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the Prefect server did not start"
            time.sleep(1)
    try:
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _prefect(env, *args, timeout=300) -> str:
    out = subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-2000:])
    return out.stdout


@pytest.mark.slow  # ~40 s: in `make test-all` (the fast suite's 10-minute budget is spent)
def test_a_stage_deployment_runs_to_completion_on_a_local_server(server, tmp_path):
    env = server
    _prefect(env, "work-pool", "create", POOL, "--type", "process")
    # every deployment of prefect.yaml, on this test's pool (prefect.yaml names the Makefile's pool)
    text = (ROOT / "prefect.yaml").read_text().replace("name: portrait4d-local", f"name: {POOL}")
    (tmp_path / "prefect.yaml").write_text(text)
    _prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(tmp_path / "prefect.yaml"))
    listed = _prefect(env, "deployment", "ls")
    for name in ("genhead-samples/default", "pseudo-mv/default", "evaluate/default", "portrait4d-ablation/default"):
        assert name in listed, listed
    overrides = ["genhead.n_identities=4", "genhead.shard_size=2", "genhead.views_per_identity=2"]
    overrides += ["genhead.preview_identities=2", "device=cpu"]
    # a preset that does not exist is refused by the server's parameter validation
    bad = subprocess.run(
        [PREFECT, "deployment", "run", "genhead-samples/default", "-p", "preset=huge"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "huge" in bad.stdout + bad.stderr
    run = _prefect(env, "deployment", "run", "genhead-samples/default", "-p", f"overrides={json.dumps(overrides)}")
    assert "Created flow run" in run, run
    _prefect(env, "worker", "start", "--pool", POOL, "--run-once", timeout=400)  # picks the run up, runs it, exits
    runs = json.loads(_prefect(env, "flow-run", "ls", "--output", "json"))
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"], runs
    art = ArtifactRegistry(env["P4D_HOME"]).resolve("genhead_samples@latest", preset="tiny")
    assert art.manifest["counts"]["identities"] == 4
