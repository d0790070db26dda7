"""Prefect flow of stage 1b: the analyser's synthetic heads (``analyser_samples``), several
independently drawn expressions per identity, for E_mot and the evaluation analyser.

    python -m flows.analyser_samples --preset tiny [--set "analyser_samples.n_identities=64"]
"""

from __future__ import annotations

import argparse

from prefect import flow

from pipeline_tasks.analyser_samples import analyser_samples_task
from pipeline_tasks.config import load_config


@flow(name="analyser-samples", log_prints=True)
def analyser_samples_flow(preset: str = "tiny", overrides: list[str] | None = None) -> str:
    """Render (or reuse) the ``analyser_samples`` artifact of ``preset``; returns its ``kind@version``."""
    return analyser_samples_task(load_config(preset, overrides)).ref


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", default="", help="space-separated section.field=value overrides")
    a = ap.parse_args()
    print(analyser_samples_flow(a.preset, a.set.split() or None))
