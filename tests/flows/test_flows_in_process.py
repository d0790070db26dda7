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
    "analyser_samples.visibility_identities=2",
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
