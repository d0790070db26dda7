"""Prefect flow: synthetic monocular talking-head videos (``synthetic_videos``).

python -m flows.synthetic_videos --preset tiny
"""

from __future__ import annotations

import argparse

from prefect import flow

from pipeline_tasks.config import load_config
from pipeline_tasks.synthetic_videos import synthetic_videos_task


@flow(name="synthetic-videos")
def synthetic_videos_flow(preset: str = "tiny", overrides: list[str] | None = None) -> str:
    return synthetic_videos_task(load_config(preset, overrides))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", default="")
    a = ap.parse_args()
    print(synthetic_videos_flow(a.preset, a.set.split() or None))
