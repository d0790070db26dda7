"""The v2 ablation (DESIGN.md §9): Ψ trained on pseudo multi-view data vs the same budget on monocular
frames only, compared on the same benchmark, per yaw bin.

The monocular variant is stage 4 with ``psi.p_target_real = psi.p_driving_real = 1``: every target
and every driving input is a real frame, so the pseudo views are never seen — same data store, steps,
batch and losses. Both Ψ are evaluated by stage 5; this module compares the two ``eval`` artifacts
(they must share the benchmark digest) and publishes an ``ablation`` artifact: ``comparison.json``,
``report.md`` (per task and yaw bin: both means, the paired difference over identities ± its
standard error) and ``plots/ablation_vs_yaw.png``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from pipeline_tasks.evaluate import ABLATION_KIND, LOWER_IS_BETTER, METRICS, EvaluationError, _plot_vs_yaw
from pipeline_tasks.stage import run_once
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

SCHEMA_VERSION = 1
MONOCULAR_OVERRIDES = ["psi.p_target_real=1", "psi.p_driving_real=1"]
TASKS = ("self_reenactment", "cross_view", "cross_identity_driving_view", "cross_identity")
SHOWN = ("psnr", "lpips", "expression_error", "pose_error_deg", "identity_similarity")


def _load(art: Artifact) -> dict:
    path = art.path / "metrics.json"
    if art.kind != "eval" or not path.is_file():
        raise EvaluationError(f"{art.ref} ({art.path}) is not an eval artifact with metrics.json")
    return json.loads(path.read_text())


def paired_difference(a: list[list[float]], b: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per bin: mean over identities of (a − b) and its standard error (same identities in both)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)  # [n, V]
    n = d.shape[0]
    se = d.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.full(d.shape[1], float("nan"))
    return d.mean(0).tolist(), se.tolist()


def compare(method: dict, baseline: dict) -> dict[str, Any]:
    """Per task, metric and bin: method mean, baseline mean, paired difference and its standard error."""
    if method["benchmark"]["digest"] != baseline["benchmark"]["digest"]:
        raise EvaluationError(
            f"{method['model']} and {baseline['model']} were evaluated on different benchmarks "
            f"({method['benchmark']['digest']} vs {baseline['benchmark']['digest']}); evaluate both with one config"
        )
    out: dict[str, Any] = {}
    for t in TASKS:
        if t not in method["tasks"] or t not in baseline["tasks"]:
            continue
        ma, mb = method["tasks"][t], baseline["tasks"][t]
        out[t] = {"bins": ma["bins"], "metrics": {}}
        for m in [m for m in METRICS if m in ma["per_image"] and m in mb["per_image"]]:
            diff, se = paired_difference(ma["per_image"][m], mb["per_image"][m])
            out[t]["metrics"][m] = {"method": ma["by_bin"][m], "baseline": mb["by_bin"][m], "difference": diff, "se": se,
                                    "mean_difference": float(np.mean(diff))}
    return out


def compare_evals(cfg, method_eval: Artifact | str, baseline_eval: Artifact | str, registry: ArtifactRegistry | None = None,
                  labels: tuple[str, str] = ("pseudo multi-view (v2)", "monocular only")) -> Artifact:
    """The ``ablation`` artifact comparing two evaluations of Ψ (method first)."""
    registry = registry or ArtifactRegistry()
    a, b = registry.resolve(method_eval), registry.resolve(baseline_eval)
    ma, mb = _load(a), _load(b)
    comp = compare(ma, mb)
    conf = {"preset": cfg.preset, "labels": list(labels), "tasks": list(comp)}
    return run_once(registry, ABLATION_KIND, conf, [a, b], SCHEMA_VERSION, lambda w: _write(w, registry, a, b, ma, mb, comp, labels))


def _psi_setting(registry: ArtifactRegistry, eval_art: Artifact) -> str:
    for p in eval_art.parents:
        if p.startswith("psi@"):
            psi = registry.resolve(p)
            c = psi.config.get("psi", {})
            return f"`{p}` (p_target_real={c.get('p_target_real')}, p_driving_real={c.get('p_driving_real')}, steps={c.get('steps')})"
    return "?"


def _write(w: ArtifactWriter, registry, a: Artifact, b: Artifact, ma: dict, mb: dict, comp: dict, labels) -> None:
    result = {"method": {"label": labels[0], "eval": a.ref, "model": ma["model"]},
              "baseline": {"label": labels[1], "eval": b.ref, "model": mb["model"]},
              "benchmark": ma["benchmark"], "lpips_real_trunk": ma["instruments"]["lpips_real_trunk"], "tasks": comp}
    (w.path / "comparison.json").write_text(json.dumps(result, indent=2))
    lines = [f"# v2 ablation: {labels[0]} vs {labels[1]}", "",
             f"- method: {_psi_setting(registry, a)} → `{a.ref}`",
             f"- baseline: {_psi_setting(registry, b)} → `{b.ref}`",
             f"- benchmark `{ma['benchmark']['digest']}`: {ma['benchmark']['identities']} held-out identities", "",
             "Δ = method − baseline, paired over identities, ± one standard error. "
             "Better for the method: Δ > 0 for psnr/identity_similarity, Δ < 0 for lpips/errors."
             + ("" if result["lpips_real_trunk"] else " LPIPS uses a random trunk (ImageNet weights absent)."), ""]
    for t, res in comp.items():
        lines += [f"## {t.replace('_', ' ')}", "",
                  "| bin | " + " | ".join(f"{m} ({labels[0].split()[0]} / {labels[1].split()[0]}, Δ±se)" for m in SHOWN) + " |",
                  "|---" * (len(SHOWN) + 1) + "|"]
        for i, lab in enumerate(res["bins"]):
            cells = []
            for m in SHOWN:
                r = res["metrics"][m]
                d = 2 if m in ("psnr", "pose_error_deg") else 3
                cells.append(f"{r['method'][i]:.{d}f} / {r['baseline'][i]:.{d}f}, {r['difference'][i]:+.{d}f}±{r['se'][i]:.{d}f}")
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
        if len(res["bins"]) > 1:
            wins = {m: sum(better(m, d) for d in res["metrics"][m]["difference"]) for m in SHOWN}
            lines += ["", f"{labels[0]} better in: " + ", ".join(f"{m} {k}/{len(res['bins'])} bins" for m, k in wins.items())]
        lines.append("")
    lines += ["![ablation vs yaw](plots/ablation_vs_yaw.png)", ""]
    (w.path / "report.md").write_text("\n".join(lines))
    bins_v = [t for t in ("cross_view", "cross_identity") if t in comp]
    if bins_v:
        yaw = ma["benchmark"]["yaw_bins_degrees"]
        tasks = {}
        for t in bins_v:
            tasks[f"{t} ({labels[0]})"] = {"by_bin": {m: v["method"] for m, v in comp[t]["metrics"].items()}}
            tasks[f"{t} ({labels[1]})"] = {"by_bin": {m: v["baseline"] for m, v in comp[t]["metrics"].items()}}
        styles = {k: ("--" if labels[1] in k else "-") for k in tasks}
        _plot_vs_yaw(tasks, yaw, w.path / "plots" / "ablation_vs_yaw.png", f"ablation: {labels[0]} (solid) vs {labels[1]} (dashed)", styles)
    for t, res in comp.items():
        for m in ("psnr", "lpips", "expression_error", "identity_similarity"):
            w.metrics[f"delta_{t}_{m}"] = round(res["metrics"][m]["mean_difference"], 5)
        if len(res["bins"]) > 1:
            for lab, dv in zip(res["bins"], res["metrics"]["psnr"]["difference"]):
                w.metrics[f"delta_{t}_psnr_yaw{lab.rstrip('°')}"] = round(dv, 4)
    w.counts.update({"tasks": len(comp), "identities": ma["benchmark"]["identities"]})
    print("\n".join(lines[: 8]))


def better(metric: str, difference: float) -> bool:
    """Whether a method − baseline difference favours the method."""
    return difference < 0 if metric in LOWER_IS_BETTER else difference > 0
