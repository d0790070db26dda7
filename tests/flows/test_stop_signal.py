"""SIGTERM (or Ctrl-C) stops `python -m flows.pipeline` within seconds, with nothing of it left running and the
stage it was in left for the next run to resume (flows/supervise.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage_schemas.artifacts import ArtifactRegistry

ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose environment mentions ``text`` (this run's unique artifact root)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text.encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


# SIGINT (Ctrl-C) takes the same path through flows/supervise.py; it runs with the slow tests (time budget)
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_stops_the_pipeline_within_seconds_and_leaves_it_resumable(tmp_path, signum):
    root = tmp_path / "artifacts"
    env = {
        **os.environ,
        "P4D_HOME": str(root),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "P4D_STOP_GRACE_S": "5",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.pipeline", "--preset", "tiny", "--set", "genhead.n_identities=200000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not list(root.glob("genhead_samples/.tmp-*/store.zarr")):  # stage 1 is writing
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "stage 1 did not start within 300 s"
        time.sleep(0.5)
    time.sleep(2)
    t0 = time.monotonic()
    proc.send_signal(signum)
    code = proc.wait(timeout=120)
    stopped_in = time.monotonic() - t0
    assert code == 128 + signum, proc.stderr.read()[-3000:]
    assert stopped_in < 60, f"took {stopped_in:.0f} s to stop"  # the grace is 5 s; generous for a loaded machine
    time.sleep(1)
    assert _processes_mentioning(str(root)) == []  # the flow, its threads and its Prefect server are gone
    (temp,) = ArtifactRegistry(root).temporaries()
    assert temp.kind == "genhead_samples" and not temp.in_use  # what the next run resumes from
    assert "stopping" in proc.stderr.read()
