"""Every flow, in process, under Prefect's test harness (a temporary API): the ablation flow with one seed runs
the pipeline flow, which runs each stage's flow (genhead-samples, train-psi3d, analyser-samples,
train-motion-encoder, synthetic-videos, pseudo-mv, train-psi, evaluate), then trains and evaluates the monocular
variant and compares them. Asserts the flow runs Prefect recorded and the artifacts each flow returned."""

from __future__ import annotations

import asyncio

import pytest

FAST = [
    "device=cpu",
    "genhead.n_identities=8",
    "genhead.shard_size=4",
    "genhead.views_per_identity=2",
    "genhead.preview_identities=2",
    "psi3d.steps=2",
    "psi3d.val_identities=2",
    "psi3d.batch_size=2",
    "analyser_samples.n_identities=4",
    "analyser_samples.expressions_per_identity=2",
    "analyser_samples.shard_size=8",
    "analyser_samples.visibility_samples=4",
    "motion_encoder.steps=2",
    "motion_encoder.val_identities=2",
    "motion_encoder.batch_size=8",
    "motion_encoder.width=8",
    "videos.n_videos=3",
    "videos.n_frames=4",
    "pseudo_mv.views_per_frame=2",
    "pseudo_mv.frame_batch=4",
    "psi.steps=2",
    "psi.batch_size=2",
    "psi.val_videos=1",
    "eval.n_identities=2",
    "eval.yaw_bins_degrees=[-30,0,30]",
    "eval.trajectory_frames=8",
    "eval.probe_identities=4",
    "eval.probe_views=2",
    "eval.grid_identities=2",
    "eval.analyser_steps=2",
]
STAGE_FLOWS = {
    "genhead-samples",
    "train-psi3d",
    "analyser-samples",
    "train-motion-encoder",
    "synthetic-videos",
    "pseudo-mv",
    "train-psi",
    "evaluate",
}


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


async def _flow_names() -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs()
        flows = {f.id: f.name for f in await client.read_flows()}
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(flows[r.flow_id], []).append(r.state_name)
    return out


def test_every_flow_runs_in_process(prefect_api, registry):
    from flows.ablation import ablation_flow

    refs = ablation_flow("tiny", FAST, seeds=1)
    kinds = {
        "genhead_samples",
        "psi3d",
        "analyser_samples",
        "motion_encoder",
        "synthetic_videos",
        "pseudo_mv",
        "psi",
        "eval_psi3d",
        "eval_psi",
        "psi_monocular",
        "eval_psi_monocular",
        "ablation",
    }
    assert kinds <= set(refs)
    for key in kinds:
        art = registry.resolve(refs[key])
        assert art.manifest["status"] == "complete", key
    assert registry.resolve(refs["ablation"]).parents == [refs["eval_psi"], refs["eval_psi_monocular"]]
    runs = asyncio.run(_flow_names())
    assert STAGE_FLOWS | {"portrait4d-pipeline", "portrait4d-ablation"} <= set(runs), sorted(runs)
    assert all(state == "Completed" for states in runs.values() for state in states), runs
    # what a user sees in the UI: progress of training and conversion, and the project's own log lines
    progress, messages = asyncio.run(_progress_and_logs())
    assert {"psi3d-training", "motion-encoder-training", "psi-training", "pseudo-mv-videos"} <= set(progress), progress
    assert all(value == 100.0 for value in progress.values()), progress
    assert any("is complete: skipping the stage" in m for m in messages)  # the ablation reuses the pipeline's stages


async def _progress_and_logs() -> tuple[dict[str, float], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

    async with get_client() as client:
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])))
        logs, offset = [], 0
        while batch := await client.read_logs(limit=200, offset=offset):
            logs += batch
            offset += len(batch)
    return {a.key: float(a.data) for a in arts if a.key}, [entry.message for entry in logs]


def test_a_stage_task_retries_a_transient_fault_and_resumes_and_never_retries_bad_input(prefect_api, registry):
    """The options every stage task gets (pipeline_tasks/stage.py): a RuntimeError (e.g. out of memory) fails the
    first attempt after part of the payload is written; Prefect runs the task again and the rerun resumes from
    that part (run_once adopts the temporary folder). A ValueError (bad input/config) is not retried."""
    from prefect import flow

    from pipeline_tasks import stage

    calls = []

    def build(w):
        calls.append(w.resumed)
        part = w.path / "part1"
        if not part.exists():
            part.write_text("done")
            raise RuntimeError("CUDA out of memory (injected)")
        (w.path / "part2").write_text("done")

    def make(config):
        return stage.run_once(registry, "retried", config, [], 1, build, "pipeline_tasks.stage")

    options = dict(retries=stage.STAGE_RETRIES, retry_delay_seconds=0, retry_condition_fn=stage.transient_failure)
    task = stage.stage_task(make, "retried-stage", **options)
    art = flow(task)({"a": 1})
    assert calls == [False, True] and (art.path / "part1").exists() and (art.path / "part2").exists()

    def bad(config):
        calls.append("bad")
        raise ValueError("no such preset")

    with pytest.raises(ValueError):
        flow(stage.stage_task(bad, "bad-stage", **options))({"a": 2})
    assert calls.count("bad") == 1
