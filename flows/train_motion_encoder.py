"""Flow of stage 2b: train (or reuse, or resume) the motion encoder E_mot and publish its R² table.

python -m flows.train_motion_encoder --preset tiny --samples analyser_samples@latest [--set motion_encoder.steps=100]
"""

from __future__ import annotations

import argparse

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.cli import flow_parser
from pipeline_tasks.config import Preset, load_config
from pipeline_tasks.train_motion_encoder import r2_table, summary_markdown, train_motion_encoder_task
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="train-motion-encoder", log_prints=True)
def train_motion_encoder_flow(
    preset: Preset = "tiny",
    overrides: list[str] | None = None,
    samples: str = "analyser_samples@latest",
    p4d_home: str | None = None,
) -> str:
    """Returns the ``motion_encoder@<version>`` reference."""
    cfg = load_config(preset, overrides)
    registry = ArtifactRegistry(p4d_home)
    art = train_motion_encoder_task(cfg, samples, registry)
    key = f"motion-encoder-{art.version}"
    create_markdown_artifact(summary_markdown(art), key=key, description=f"motion encoder {art.ref}")
    rows = r2_table(art.manifest.get("metrics", {}))
    if rows:
        create_table_artifact(rows, key=f"{key}-r2", description=f"held-out R² per parameter, {art.ref}")
    print(summary_markdown(art))
    return art.ref


def build_parser() -> argparse.ArgumentParser:
    ap = flow_parser(__doc__)
    ap.add_argument("--samples", default="analyser_samples@latest")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    train_motion_encoder_flow(args.preset, args.overrides, args.samples)


if __name__ == "__main__":
    main()
