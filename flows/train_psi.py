"""Flow of stage 4: train (or reuse, or resume) Ψ by cross-view self-reenactment.

python -m flows.train_psi --preset tiny [--set psi.steps=100]
"""

from __future__ import annotations

import argparse

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.cli import flow_parser
from flows.reports import artifact_markdown
from pipeline_tasks.config import Preset, load_config
from pipeline_tasks.train_psi import train_psi_task
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="train-psi", log_prints=True)
def train_psi_flow(
    preset: Preset = "tiny",
    overrides: list[str] | None = None,
    pseudo_mv: str = "pseudo_mv@latest",
    psi3d: str = "psi3d@latest",
    motion_encoder: str = "motion_encoder@latest",
) -> str:
    art = train_psi_task(load_config(preset, overrides), pseudo_mv, psi3d, motion_encoder, ArtifactRegistry())
    create_markdown_artifact(artifact_markdown(art, "Ψ"), key="psi", description=f"Ψ {art.ref}")
    return art.ref


def build_parser() -> argparse.ArgumentParser:
    return flow_parser(__doc__)


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(train_psi_flow(a.preset, a.overrides))


if __name__ == "__main__":
    main()
