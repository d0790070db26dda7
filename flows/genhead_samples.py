"""Prefect flow of stage 1: synthetic multi-view head samples (``genhead_samples``).

python -m flows.genhead_samples --preset tiny [--set "genhead.n_identities=64"]
"""

from __future__ import annotations

import argparse

from prefect import flow

from pipeline_tasks.config import load_config
from pipeline_tasks.genhead import genhead_samples_task


@flow(name="genhead-samples")
def genhead_samples_flow(preset: str = "tiny", overrides: list[str] | None = None) -> str:
    """Render (or reuse) the ``genhead_samples`` artifact of ``preset``; returns its ``kind@version``."""
    return genhead_samples_task(load_config(preset, overrides))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", default="", help="space-separated section.field=value overrides")
    a = ap.parse_args()
    print(genhead_samples_flow(a.preset, a.set.split() or None))
