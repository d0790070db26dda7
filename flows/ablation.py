"""The v2 ablation: Ψ with pseudo multi-view data (the method) vs the same budget on monocular frames only.

    python -m flows.ablation --preset tiny [--set "psi.steps=100"]      (make ablation)

Runs the whole pipeline (stages 1–5; every stage already complete for these inputs is skipped), then
stage 4 again with ``psi.p_target_real=1 psi.p_driving_real=1`` (a different ``psi`` version, same data,
steps and losses), evaluates it on the same benchmark, and publishes the per-yaw-bin comparison as an
``ablation`` artifact and a Prefect markdown artifact.
"""

from __future__ import annotations

import argparse
import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.evaluate import evaluate_flow
from flows.pipeline import _as_list, pipeline_flow
from flows.train_psi import train_psi_flow
from pipeline_tasks.ablation import MONOCULAR_OVERRIDES, compare_evals
from pipeline_tasks.config import load_config
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="portrait4d-ablation", log_prints=True)
def ablation_flow(preset: str = "tiny", overrides: list[str] | str | None = None) -> dict[str, str]:
    t0 = time.time()
    ov = _as_list(overrides)
    refs = pipeline_flow(preset, ov)
    mono_ov = ov + MONOCULAR_OVERRIDES
    refs["psi_monocular"] = train_psi_flow(preset, mono_ov, refs["pseudo_mv"], refs["psi3d"], refs["motion_encoder"])
    refs["eval_psi_monocular"] = evaluate_flow(preset, ov, refs["psi_monocular"])
    cfg = load_config(preset, ov)
    registry = ArtifactRegistry()
    art = compare_evals(cfg, refs["eval_psi"], refs["eval_psi_monocular"], registry)
    refs["ablation"] = art.ref
    report = (art.path / "report.md").read_text()
    create_markdown_artifact(report, key=f"ablation-{art.version}", description=f"v2 ablation {art.ref}")
    print(report)
    print(f"{art.ref}: {art.path / 'report.md'}  (ablation flow {time.time() - t0:.0f} s)")
    return refs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", dest="overrides", default="", help='space-separated "section.field=value" overrides')
    a = ap.parse_args(argv)
    ablation_flow(a.preset, a.overrides or None)


if __name__ == "__main__":
    main()
