"""The whole pipeline (tiny, cut down) with its artifact root on an S3-compatible server on 127.0.0.1 (moto, started
by the test): `python -m flows.pipeline` with ``P4D_HOME=s3://bucket/root`` completes, `inspect` lists it from the
bucket, a second run on another machine (an empty mirror) reuses every stage, and a plain zarr client opens the
pseudo multi-view store by its URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zarr
from test_flows_in_process import FAST  # the cut-down tiny overrides of the in-process flow test

ROOT = Path(__file__).resolve().parents[2]
URL = "s3://bucket/pipeline"


def _run(args: list[str], env: dict[str, str], timeout: int = 900) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout + out.stderr


@pytest.mark.slow
def test_the_pipeline_runs_on_object_storage_and_a_second_machine_reuses_it(s3_server, tmp_path):
    env = {
        **os.environ,
        **s3_server,
        "P4D_HOME": URL,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("PREFECT_API_URL", None)
    args = ["-m", "flows.pipeline", "--preset", "tiny"] + [a for o in FAST for a in ("--set", o)]
    first = _run(args, {**env, "P4D_MIRROR": str(tmp_path / "mirror-a")})
    assert "published" in first
    listing = _run(["-m", "storage_schemas.inspect", "--json"], {**env, "P4D_MIRROR": str(tmp_path / "mirror-c")})
    rows = [json.loads(line) for line in listing.splitlines() if line.startswith("{")]
    kinds = {r["kind"] for r in rows}
    assert {"genhead_samples", "psi3d", "motion_encoder", "pseudo_mv", "psi", "eval"} <= kinds, kinds
    assert all(r["path"].startswith(URL) for r in rows)
    second = _run(args, {**env, "P4D_MIRROR": str(tmp_path / "mirror-b")})
    assert "published" not in second and "skipping the stage" in second
    again = _run(["-m", "storage_schemas.inspect", "--json"], {**env, "P4D_MIRROR": str(tmp_path / "mirror-c")})
    assert sorted(r["version"] for r in rows) == sorted(
        json.loads(line)["version"] for line in again.splitlines() if line.startswith("{")
    )
    (pmv,) = [r for r in rows if r["kind"] == "pseudo_mv"]
    store = zarr.open_group(f"{URL}/pseudo_mv/{pmv['version']}/store.zarr", mode="r")
    assert [e["status"] for e in store.attrs["index"]] == ["converted"] * len(store.attrs["index"])
    first_video = store.attrs["index"][0]["video_id"]
    assert store[first_video]["views"].shape[1] == 2  # pseudo_mv.views_per_frame=2 in FAST
    report = _run(["-m", "storage_schemas.inspect", f"{URL}/pseudo_mv/{pmv['version']}/store.zarr"], env)
    assert "validation: OK" in report
