"""Flow of stage 3: convert videos into pseudo multi-view Zarr groups, one mapped task per shard.

    python -m flows.pseudo_mv --preset tiny [--videos 'path/*.mp4'] [--set pseudo_mv.views_per_frame=8]

Shards run one at a time in this process by default; ``--set pseudo_mv.executor.runner=dask`` runs them on a
Dask cluster through prefect-dask (``pseudo_mv.executor.dask_address=tcp://…``, or a local cluster of
``pseudo_mv.executor.dask_workers`` processes), each worker on its own GPU when there are GPUs (DESIGN.md §8).
The store is the same whichever runner wrote it.
"""

from __future__ import annotations

import argparse
import functools

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.cli import flow_parser
from flows.reports import artifact_markdown
from pipeline_tasks.config import Preset, Stage3Executor, load_config
from pipeline_tasks.pseudo_mv import convert, prefect_map_shards
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="pseudo-mv", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def pseudo_mv_flow(
    preset: Preset = "tiny",
    overrides: list[str] | None = None,
    psi3d: str = "psi3d@latest",
    motion_encoder: str = "motion_encoder@latest",
    videos: str | None = None,
    synthetic_videos: str | None = None,
) -> str:
    """``videos``: a folder or glob of user videos; else the ``synthetic_videos`` artifact named (the pipeline
    passes the one it just built), default the latest one."""
    overrides = list(overrides or []) + ([f"pseudo_mv.videos={videos}"] if videos else [])
    cfg = load_config(preset, overrides)
    art = convert(
        cfg,
        psi3d,
        motion_encoder,
        synthetic_videos,
        registry=ArtifactRegistry(),
        map_shards=functools.partial(map_shards_on, cfg.pseudo_mv.executor),
    )
    create_markdown_artifact(
        artifact_markdown(art, "pseudo multi-view data"), key="pseudo-mv", description=f"{art.ref}"
    )
    return art.ref


def shard_task_runner(executor: Stage3Executor) -> TaskRunner:
    """The task runner stage 3's shards run on: one thread, or Dask (an existing scheduler, or a local cluster
    of worker processes with ``threads_per_worker`` torch threads each)."""
    if executor.runner == "thread":
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if executor.dask_address:
        return DaskTaskRunner(address=executor.dask_address)
    threads = str(executor.threads_per_worker)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    api = _prefect_api_url()
    if api:  # the workers report their task runs to this flow's API (else each would start a temporary one)
        env["PREFECT_API_URL"] = api
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": executor.dask_workers,
            "threads_per_worker": 1,  # one shard at a time per worker; torch's threads are set below
            "processes": True,
            "dashboard_address": None,
            "env": env,
        }
    )


def _prefect_api_url() -> str | None:
    """The API this flow run reports to (a server's, or the temporary one Prefect started for this process)."""
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL

    ctx = FlowRunContext.get()
    if ctx is not None and ctx.client is not None:
        return str(ctx.client.api_url)
    return PREFECT_API_URL.value() or None


def map_shards_on(executor: Stage3Executor, shard_fn, parts):
    """Stage 3's shards as mapped Prefect tasks on the runner ``executor`` names, started for this call only."""
    with shard_task_runner(executor) as runner:
        return prefect_map_shards(shard_fn, parts, executor, runner)


def build_parser() -> argparse.ArgumentParser:
    ap = flow_parser(__doc__)
    ap.add_argument("--videos", default=None, help="folder or glob of user videos (default: synthetic_videos@latest)")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(pseudo_mv_flow(a.preset, a.overrides, videos=a.videos))


if __name__ == "__main__":
    main()
