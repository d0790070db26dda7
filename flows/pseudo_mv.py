"""Flow of stage 3: convert videos into pseudo multi-view Zarr groups, one mapped task per shard.

    python -m flows.pseudo_mv --preset tiny [--videos 'path/*.mp4'] [--set pseudo_mv.views_per_frame=8]

Shards run one at a time here (one device); a Dask or Ray task runner (prefect-dask / prefect-ray)
spreads them over workers, one GPU each (DESIGN.md §8).
"""

from __future__ import annotations

import argparse

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.cli import flow_parser
from flows.reports import artifact_markdown
from pipeline_tasks.config import load_config
from pipeline_tasks.pseudo_mv import convert, prefect_map_shards
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="pseudo-mv", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def pseudo_mv_flow(
    preset: str = "tiny",
    overrides: list[str] | None = None,
    psi3d: str = "psi3d@latest",
    motion_encoder: str = "motion_encoder@latest",
    videos: str | None = None,
    synthetic_videos: str | None = None,
) -> str:
    """``videos``: a folder or glob of user videos; else the ``synthetic_videos`` artifact named (the pipeline
    passes the one it just built), default the latest one."""
    overrides = list(overrides or []) + ([f"pseudo_mv.videos={videos}"] if videos else [])
    art = convert(
        load_config(preset, overrides),
        psi3d,
        motion_encoder,
        synthetic_videos,
        registry=ArtifactRegistry(),
        map_shards=prefect_map_shards,
    )
    create_markdown_artifact(
        artifact_markdown(art, "pseudo multi-view data"), key="pseudo-mv", description=f"{art.ref}"
    )
    return art.ref


def build_parser() -> argparse.ArgumentParser:
    ap = flow_parser(__doc__)
    ap.add_argument("--videos", default=None, help="folder or glob of user videos (default: synthetic_videos@latest)")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(pseudo_mv_flow(a.preset, a.overrides, videos=a.videos))


if __name__ == "__main__":
    main()
