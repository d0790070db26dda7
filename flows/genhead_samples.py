"""Prefect flow of stage 1: synthetic multi-view head samples (``genhead_samples``).

python -m flows.genhead_samples --preset tiny [--set genhead.n_identities=64 ...]
"""

from __future__ import annotations

import argparse

from flows.cli import flow_parser
from flows.stage_flow import parentless_stage_flow

genhead_samples_flow = parentless_stage_flow(
    "genhead_samples", "Render (or reuse) the genhead_samples artifact of a preset."
)


def build_parser() -> argparse.ArgumentParser:
    return flow_parser(__doc__)


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(genhead_samples_flow(a.preset, a.overrides or None))


if __name__ == "__main__":
    main()
