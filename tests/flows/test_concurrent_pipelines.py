"""Two `python -m flows.pipeline` started together on one artifact root and one Prefect home both finish: each
stage is built once (the second process waits for the first's lock, says so, and reuses the artifact)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_flows_in_process import FAST  # the cut-down tiny overrides of the in-process flow test

from storage_schemas.artifacts import ArtifactRegistry

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_pipelines_on_one_root_both_finish_and_build_each_stage_once(tmp_path):
    env = {
        **os.environ,
        "P4D_HOME": str(tmp_path / "artifacts"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("PREFECT_API_URL", None)
    args = [sys.executable, "-m", "flows.pipeline", "--preset", "tiny"] + [a for o in FAST for a in ("--set", o)]
    procs = []
    for _ in range(2):
        procs.append(
            subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
        time.sleep(2)
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-3000:] for o in outputs]
    assert any("another process is writing" in o and "waiting for it" in o for o in outputs)
    reg = ArtifactRegistry(tmp_path / "artifacts")
    kinds = [a.kind for a in reg.list()]
    assert kinds.count("psi3d") == kinds.count("psi") == kinds.count("pseudo_mv") == 1 and kinds.count("eval") == 2
    assert reg.incomplete() == []
