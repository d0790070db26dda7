"""Prefect flow: synthetic monocular talking-head videos (``synthetic_videos``).

python -m flows.synthetic_videos --preset tiny [--set videos.n_videos=8 ...]
"""

from __future__ import annotations

import argparse

from flows.cli import flow_parser
from flows.stage_flow import parentless_stage_flow

synthetic_videos_flow = parentless_stage_flow(
    "synthetic_videos", "Render (or reuse) the synthetic talking-head videos of a preset."
)


def build_parser() -> argparse.ArgumentParser:
    return flow_parser(__doc__)


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(synthetic_videos_flow(a.preset, a.overrides or None))


if __name__ == "__main__":
    main()
