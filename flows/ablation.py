"""The v2 ablation: Ψ with pseudo multi-view data (the method) vs the same budget on monocular frames only.

    python -m flows.ablation --preset tiny [--seeds 3] [--set psi.steps=100 ...]      (make ablation)

Runs the whole pipeline (stages 1–5; every stage already complete for these inputs is skipped), then
stage 4 again with ``psi.p_target_real=1 psi.p_driving_real=1`` (a different ``psi`` version, same data,
steps and losses), each variant with ``seeds`` training seeds (``psi.seed``, ``psi.seed + 1``, …; the
pipeline's Ψ is the method's first), evaluates every Ψ on the same benchmark, and publishes the
per-yaw-bin comparison with its intervals as an ``ablation`` artifact and a Prefect markdown artifact.
"""

from __future__ import annotations

import argparse
import sys
import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows import supervise
from flows.cli import flow_parser
from flows.evaluate import evaluate_flow
from flows.pipeline import _as_list, pipeline_flow
from flows.train_psi import train_psi_flow
from pipeline_tasks.ablation import MONOCULAR_OVERRIDES, compare_evals
from pipeline_tasks.config import Preset, load_config
from storage_schemas.artifacts import ArtifactRegistry


@flow(name="portrait4d-ablation", log_prints=True)
def ablation_flow(preset: Preset = "tiny", overrides: list[str] | None = None, seeds: int = 3) -> dict[str, str]:
    t0 = time.time()
    if seeds < 1:
        raise ValueError(f"seeds must be ≥ 1, got {seeds}")
    ov = _as_list(overrides)
    cfg = load_config(preset, ov)
    refs = pipeline_flow(preset, ov)
    upstream = (refs["pseudo_mv"], refs["psi3d"], refs["motion_encoder"])
    method, baseline = [], []
    for i in range(seeds):
        seed_ov = [f"psi.seed={cfg.psi.seed + i}"]
        if i == 0:
            psi_ref, eval_ref = refs["psi"], refs["eval_psi"]  # the pipeline's own Ψ is the method's first seed
        else:
            psi_ref = refs[f"psi_seed{i}"] = train_psi_flow(preset, ov + seed_ov, *upstream)
            eval_ref = refs[f"eval_psi_seed{i}"] = evaluate_flow(preset, ov, psi_ref)
        method.append(eval_ref)
        suffix = "" if i == 0 else f"_seed{i}"
        refs[f"psi_monocular{suffix}"] = train_psi_flow(preset, ov + MONOCULAR_OVERRIDES + seed_ov, *upstream)
        refs[f"eval_psi_monocular{suffix}"] = evaluate_flow(preset, ov, refs[f"psi_monocular{suffix}"])
        baseline.append(refs[f"eval_psi_monocular{suffix}"])
    registry = ArtifactRegistry()
    art = compare_evals(cfg, method, baseline, registry)
    refs["ablation"] = art.ref
    report = (art.path / "report.md").read_text()
    create_markdown_artifact(report, key=f"ablation-{art.version}", description=f"v2 ablation {art.ref}")
    print(report)
    print(f"{art.ref}: {art.path / 'report.md'}  (ablation flow {time.time() - t0:.0f} s)")
    return refs


def build_parser() -> argparse.ArgumentParser:
    ap = flow_parser(__doc__)
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per variant (paired by position)")
    return ap


def main(argv: list[str] | None = None) -> None:
    if not supervise.is_child():  # Ctrl-C / SIGTERM stop the run within seconds (flows/supervise.py)
        raise SystemExit(supervise.run_supervised("flows.ablation", sys.argv[1:] if argv is None else list(argv)))
    a = build_parser().parse_args(argv)
    ablation_flow(a.preset, a.overrides or None, a.seeds)


if __name__ == "__main__":
    main()
