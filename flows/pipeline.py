"""The whole DAG: stages 1–5 in order, each consuming the artifact the previous one made.

    python -m flows.pipeline --preset tiny [--set psi3d.steps=100 --set psi.steps=50] [--videos 'clips/*.mp4']

Every stage is a subflow that resolves its upstream by exact version and skips itself when its
own version is already complete, so a second run with nothing changed recomputes nothing, and a
changed stage config recomputes that stage and the ones after it only.
"""

from __future__ import annotations

import argparse
import sys
import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import supervise
from flows.analyser_samples import analyser_samples_flow
from flows.cli import flow_parser
from flows.evaluate import evaluate_flow
from flows.genhead_samples import genhead_samples_flow
from flows.pseudo_mv import pseudo_mv_flow
from flows.synthetic_videos import synthetic_videos_flow
from flows.train_motion_encoder import train_motion_encoder_flow
from flows.train_psi import train_psi_flow
from flows.train_psi3d import train_psi3d_flow
from pipeline_tasks.config import Preset, load_config, parse_overrides
from storage_schemas.artifacts import ArtifactRegistry


def _as_list(overrides: list[str] | None) -> list[str]:
    """Overrides as ``key=value`` items (None as ``key=``), which ``parse_overrides`` reads back to the same values."""
    return [f"{k}={'' if v is None else v}" for k, v in parse_overrides(overrides).items()]


@flow(name="portrait4d-pipeline", log_prints=True)
def pipeline_flow(
    preset: Preset = "tiny", overrides: list[str] | None = None, videos: str | None = None
) -> dict[str, str]:
    """Run stages 1–5 on ``preset``; ``videos`` (folder or glob) replaces the synthetic videos in stage 3."""
    t0 = time.time()
    ov = _as_list(overrides) + ([f"pseudo_mv.videos={videos}"] if videos else [])
    cfg = load_config(preset, ov)  # fail fast on a bad preset or override
    refs: dict[str, str] = {}
    refs["genhead_samples"] = genhead_samples_flow(preset, ov)
    refs["psi3d"] = train_psi3d_flow(preset, ov, refs["genhead_samples"])
    refs["analyser_samples"] = analyser_samples_flow(preset, ov)
    refs["motion_encoder"] = train_motion_encoder_flow(preset, ov, refs["analyser_samples"])
    if not cfg.pseudo_mv.videos:
        refs["synthetic_videos"] = synthetic_videos_flow(preset, ov)
    # stage 3 on the videos this run built, not on whichever synthetic_videos artifact is newest in the registry
    refs["pseudo_mv"] = pseudo_mv_flow(
        preset, ov, refs["psi3d"], refs["motion_encoder"], synthetic_videos=refs.get("synthetic_videos")
    )
    refs["psi"] = train_psi_flow(preset, ov, refs["pseudo_mv"], refs["psi3d"], refs["motion_encoder"])
    # stage 5: both models on the held-out synthetic benchmark (pipeline_tasks/evaluate.py)
    refs["eval_psi3d"] = evaluate_flow(preset, ov, refs["psi3d"])
    refs["eval_psi"] = evaluate_flow(preset, ov, refs["psi"])

    registry = ArtifactRegistry()
    registry.write_catalog()
    rows = []
    for stage, ref in refs.items():
        art = registry.resolve(ref)
        rows.append(
            {
                "stage": stage,
                "artifact": ref,
                "parents": ", ".join(art.parents) or "-",
                **{k: round(v, 4) for k, v in art.manifest.get("metrics", {}).items() if isinstance(v, float)},
            }
        )
    create_table_artifact(rows, key="pipeline-artifacts", description=f"portrait4d pipeline ({preset})")
    lines = [
        f"# portrait4d pipeline ({preset}) in {time.time() - t0:.0f} s",
        "",
        "| stage | artifact | parents |",
        "|---|---|---|",
    ]
    lines += [f"| {r['stage']} | `{r['artifact']}` | {r['parents']} |" for r in rows]
    create_markdown_artifact("\n".join(lines), key="pipeline-summary", description=f"pipeline {preset}")
    print("\n".join(lines))
    for key in ("eval_psi3d", "eval_psi"):
        print(f"{key}: {registry.resolve(refs[key]).path / 'report.md'}")
    print(f"catalog: {registry.catalog_path}  (inspect with: make inspect)")
    return refs


def build_parser() -> argparse.ArgumentParser:
    ap = flow_parser(__doc__)
    ap.add_argument("--videos", default=None, help="folder or glob of user videos for stage 3")
    return ap


def main(argv: list[str] | None = None) -> None:
    if not supervise.is_child():  # Ctrl-C / SIGTERM stop the run within seconds (flows/supervise.py)
        raise SystemExit(supervise.run_supervised("flows.pipeline", sys.argv[1:] if argv is None else list(argv)))
    a = build_parser().parse_args(argv)
    pipeline_flow(a.preset, a.overrides or None, a.videos or None)


if __name__ == "__main__":
    main()
