"""Flow of stage 2a: train (or reuse, or resume) Ψ3d on GenHead samples.

python -m flows.train_psi3d --preset tiny [--samples genhead_samples@latest] [--set psi3d.steps=100]
"""

from __future__ import annotations

import argparse

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.cli import flow_parser
from flows.reports import artifact_markdown
from pipeline_tasks.config import Preset, load_config
from pipeline_tasks.train_psi3d import train_psi3d_task
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="train-psi3d", log_prints=True)
def train_psi3d_flow(
    preset: Preset = "tiny", overrides: list[str] | None = None, samples: str = "genhead_samples@latest"
) -> str:
    """Returns the ``psi3d@<version>`` reference."""
    art = train_psi3d_task(load_config(preset, overrides), samples, ArtifactRegistry())
    create_markdown_artifact(artifact_markdown(art, "Ψ3d"), key="psi3d", description=f"Ψ3d {art.ref}")
    return art.ref


def build_parser() -> argparse.ArgumentParser:
    ap = flow_parser(__doc__)
    ap.add_argument("--samples", default="genhead_samples@latest")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(train_psi3d_flow(a.preset, a.overrides, a.samples))


if __name__ == "__main__":
    main()
