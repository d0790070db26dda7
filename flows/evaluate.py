"""Flow of stage 5: evaluate (or reuse the evaluation of) a ``psi3d`` or ``psi`` artifact on the held-out
synthetic benchmark and publish its report.

    python -m flows.evaluate --preset tiny --model psi3d@latest
    python -m flows.evaluate --preset tiny --model psi@<version>
"""

from __future__ import annotations

import argparse

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.cli import flow_parser
from pipeline_tasks.config import Preset, load_config
from pipeline_tasks.evaluate import evaluate_task
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="evaluate", log_prints=True)
def evaluate_flow(preset: Preset = "tiny", overrides: list[str] | None = None, model: str = "psi@latest") -> str:
    """Returns the ``eval@<version>`` reference; publishes the report as a Prefect markdown artifact."""
    art = evaluate_task(load_config(preset, overrides), model, ArtifactRegistry())
    report = (art.path / "report.md").read_text()
    key = f"eval-{art.parents[0].split('@')[0]}-{art.version}".replace("_", "-")
    create_markdown_artifact(
        report + f"\n\neval artifact: `{art.ref}` at `{art.path}`", key=key, description=f"evaluation {art.ref}"
    )
    print(f"{art.ref}: {art.path / 'report.md'}")
    return art.ref


def build_parser() -> argparse.ArgumentParser:
    ap = flow_parser(__doc__)
    ap.add_argument("--model", default="psi@latest", help="psi3d@<version|latest> or psi@<version|latest>")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    evaluate_flow(a.preset, a.overrides, a.model)


if __name__ == "__main__":
    main()
