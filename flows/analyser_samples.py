"""Prefect flow of stage 1b: the analyser's synthetic heads (``analyser_samples``), several
independently drawn expressions per identity, for E_mot and the evaluation analyser.

    python -m flows.analyser_samples --preset tiny [--set analyser_samples.n_identities=64 ...]
"""

from __future__ import annotations

import argparse

from flows.cli import flow_parser
from flows.stage_flow import parentless_stage_flow

analyser_samples_flow = parentless_stage_flow(
    "analyser_samples", "Render (or reuse) the analyser_samples artifact of a preset."
)


def build_parser() -> argparse.ArgumentParser:
    return flow_parser(__doc__)


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(analyser_samples_flow(a.preset, a.overrides or None))


if __name__ == "__main__":
    main()
