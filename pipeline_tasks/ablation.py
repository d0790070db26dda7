"""The v2 ablation (DESIGN.md §9): Ψ trained on pseudo multi-view data vs the same budget on monocular
frames only, compared on the same benchmark, per yaw bin.

The monocular variant is stage 4 with ``psi.p_target_real = psi.p_driving_real = 1``: every target
and every driving input is a real frame, so the pseudo views are never seen — same data store, steps,
batch and losses. Both Ψ are trained with each of several seeds (``psi.seed``) and evaluated by stage 5; this module
compares the ``eval`` artifacts (they must share the benchmark digest; seed i of the method is paired
with seed i of the baseline) and publishes an ``ablation`` artifact: ``comparison.json``, ``report.md``
(per task and yaw bin: both means, the paired difference over identities and seeds, its standard
error over identities and a 95% interval from a two-level bootstrap that resamples seeds, then
identities, so run-to-run noise widens it) and ``plots/ablation_vs_yaw.png``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pipeline_tasks import stages
from pipeline_tasks.eval.results import LOWER_IS_BETTER, METRICS, EvaluationError, plot_vs_yaw
from pipeline_tasks.stage import StageSpec, run_once
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

SCHEMA_VERSION = (
    2  # v2: several seeds per variant, bootstrap intervals over seeds and identities; IoU and expression error
)
KIND = "ablation"
MONOCULAR_OVERRIDES = ["psi.p_target_real=1", "psi.p_driving_real=1"]
TASKS = ("self_reenactment", "cross_view", "cross_identity_driving_view", "cross_identity")
SHOWN = ("psnr", "mouth_psnr", "soft_iou", "expression_error", "identity_similarity")
BOOTSTRAP_REPS = 2000


def _load(art: Artifact) -> dict:
    path = art.path / "metrics.json"
    if art.kind != "eval" or not path.is_file():
        raise EvaluationError(f"{art.ref} ({art.path}) is not an eval artifact with metrics.json")
    return json.loads(path.read_text())


def paired_difference(a: list[list[float]], b: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per bin: mean over identities of (a − b) and its standard error (same identities in both)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)  # [n, V]; NaN (an empty region) is left out
    n = np.isfinite(d).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = (
            np.where(n > 1, np.nanstd(d, 0, ddof=1) / np.sqrt(np.maximum(n, 1)), np.nan)
            if d.shape[0] > 1
            else np.full(d.shape[1], np.nan)
        )
    return np.nanmean(d, 0).tolist(), se.tolist()


def bootstrap_interval(d: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> tuple[list[float], list[float]]:
    """95% interval of the mean of ``d [S seeds, n identities, V bins]`` per bin, resampling seeds and then
    identities with replacement (a two-level bootstrap: seed-to-seed and identity-to-identity variation both
    count). NaN entries (e.g. an empty region) are ignored."""
    rng = np.random.default_rng(seed)
    s, n, _ = d.shape
    means = np.empty((reps, d.shape[2]))
    for r in range(reps):
        seeds = rng.integers(0, s, s)
        ids = rng.integers(0, n, (s, n))
        means[r] = np.nanmean(d[seeds[:, None], ids], axis=(0, 1))
    lo, hi = np.nanpercentile(means, [2.5, 97.5], axis=0)
    return lo.tolist(), hi.tolist()


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def compare(method: dict | list[dict], baseline: dict | list[dict]) -> dict[str, Any]:
    """Per task, metric and bin: method and baseline means (over seeds and identities), the paired difference
    averaged over seeds, its standard error over identities, a 95% bootstrap interval over seeds and identities
    (``ci95``: [low per bin, high per bin]) and each seed's mean difference (``seed_differences`` [S][V]).
    ``method`` / ``baseline``: one evaluation result each, or one per seed (paired by position)."""
    methods, baselines = _as_list(method), _as_list(baseline)
    if len(methods) != len(baselines):
        raise EvaluationError(
            f"{len(methods)} method evaluations vs {len(baselines)} baseline evaluations: pair one per seed"
        )
    digests = {r["benchmark"]["digest"] for r in methods + baselines}
    if len(digests) > 1:
        raise EvaluationError(
            f"{', '.join(r['model'] for r in methods + baselines)} were evaluated on different benchmarks "
            f"({' vs '.join(sorted(digests))}); evaluate every model with one config"
        )
    out: dict[str, Any] = {}
    for t in TASKS:
        if any(t not in r["tasks"] for r in methods + baselines):
            continue
        ta, tb = [r["tasks"][t] for r in methods], [r["tasks"][t] for r in baselines]
        out[t] = {"bins": ta[0]["bins"], "seeds": len(ta), "metrics": {}}
        for m in [m for m in METRICS if all(m in x["per_image"] for x in ta + tb)]:
            a = np.array([x["per_image"][m] for x in ta], np.float64)  # [S, n, V]
            b = np.array([x["per_image"][m] for x in tb], np.float64)
            d = a - b
            diff, se = paired_difference(np.nanmean(a, 0), np.nanmean(b, 0))  # seed-averaged per identity
            lo, hi = bootstrap_interval(d)
            out[t]["metrics"][m] = {
                "method": np.nanmean(a, (0, 1)).tolist(),
                "baseline": np.nanmean(b, (0, 1)).tolist(),
                "difference": diff,
                "se": se,
                "ci95": [lo, hi],
                "seed_differences": np.nanmean(d, 1).tolist(),
                "mean_difference": float(np.nanmean(diff)),
            }
    return out


def compare_evals(
    cfg,
    method_eval: Artifact | str | list,
    baseline_eval: Artifact | str | list,
    registry: ArtifactRegistry | None = None,
    labels: tuple[str, str] = ("pseudo multi-view (v2)", "monocular only"),
) -> Artifact:
    """The ``ablation`` artifact comparing evaluations of Ψ (method first): one each, or one per seed each."""
    registry = registry or ArtifactRegistry()
    a = [stages.resolve(registry, x, "eval", cfg.preset) for x in _as_list(method_eval)]
    b = [stages.resolve(registry, x, "eval", cfg.preset) for x in _as_list(baseline_eval)]
    ma, mb = [_load(x) for x in a], [_load(x) for x in b]
    comp = compare(ma, mb)
    conf = {"preset": cfg.preset, "labels": list(labels), "tasks": list(comp), "seeds": len(a)}
    return run_once(
        registry, KIND, conf, a + b, SCHEMA_VERSION, lambda w: _write(w, registry, a, b, ma, mb, comp, labels)
    )


def _psi_setting(registry: ArtifactRegistry, eval_arts: list[Artifact]) -> str:
    runs, c = [], {}
    for e in eval_arts:
        for p in e.parents:
            if p.startswith("psi@"):
                c = registry.resolve(p).config.get("psi", {})
                runs.append(f"`{p}` (seed {c.get('seed')}) → `{e.ref}`")
    return (
        (
            f"p_target_real={c.get('p_target_real')}, p_driving_real={c.get('p_driving_real')}, "
            f"steps={c.get('steps')}: " + "; ".join(runs)
        )
        if runs
        else "?"
    )


def _write(
    w: ArtifactWriter,
    registry,
    a: list[Artifact],
    b: list[Artifact],
    ma: list[dict],
    mb: list[dict],
    comp: dict,
    labels,
) -> None:
    result = {
        "method": {"label": labels[0], "evals": [x.ref for x in a], "models": [r["model"] for r in ma]},
        "baseline": {"label": labels[1], "evals": [x.ref for x in b], "models": [r["model"] for r in mb]},
        "seeds": len(a),
        "benchmark": ma[0]["benchmark"],
        "lpips_real_trunk": ma[0]["instruments"]["lpips_real_trunk"],
        "tasks": comp,
    }
    (w.path / "comparison.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# v2 ablation: {labels[0]} vs {labels[1]} ({len(a)} seed{'s' if len(a) > 1 else ''} each)",
        "",
        f"- method: {_psi_setting(registry, a)}",
        f"- baseline: {_psi_setting(registry, b)}",
        f"- benchmark `{ma[0]['benchmark']['digest']}`: {ma[0]['benchmark']['identities']} held-out identities",
        "",
        "Δ = method − baseline, paired over identities and seeds; [low, high] its 95% interval from a bootstrap "
        "over seeds and identities (an interval that contains 0: no measurable difference). Better for the "
        "method: Δ > 0 for PSNR / IoU / identity similarity, Δ < 0 for LPIPS and errors."
        + ("" if result["lpips_real_trunk"] else " LPIPS uses a random trunk (ImageNet weights absent)."),
        "",
    ]
    for t, res in comp.items():
        shown = [m for m in SHOWN if m in res["metrics"]]
        lines += [
            f"## {t.replace('_', ' ')}",
            "",
            "| bin | "
            + " | ".join(f"{m} ({labels[0].split()[0]} / {labels[1].split()[0]}; Δ [95%])" for m in shown)
            + " |",
            "|---" * (len(shown) + 1) + "|",
        ]
        for i, lab in enumerate(res["bins"]):
            cells = []
            for m in shown:
                r = res["metrics"][m]
                d = 2 if m in ("psnr", "mouth_psnr", "pose_error_deg") else 3
                lo, hi = r["ci95"][0][i], r["ci95"][1][i]
                cells.append(
                    f"{r['method'][i]:.{d}f} / {r['baseline'][i]:.{d}f}; "
                    f"{r['difference'][i]:+.{d}f} [{lo:+.{d}f}, {hi:+.{d}f}]"
                )
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
        if len(res["bins"]) > 1:
            verdicts = {m: significant_bins(m, res["metrics"][m]) for m in shown}
            lines += [
                "",
                f"Bins whose interval excludes 0 ({labels[0]} better / worse): "
                + ", ".join(f"{m} {k}/{j}" for m, (k, j) in verdicts.items())
                + f" of {len(res['bins'])}.",
            ]
        lines.append("")
    lines += ["![ablation vs yaw](plots/ablation_vs_yaw.png)", ""]
    (w.path / "report.md").write_text("\n".join(lines))
    _plot(comp, labels, ma[0]["benchmark"]["yaw_bins_degrees"], w.path / "plots" / "ablation_vs_yaw.png")
    for t, res in comp.items():
        for m in [
            m
            for m in ("psnr", "mouth_psnr", "soft_iou", "lpips", "expression_error", "identity_similarity")
            if m in res["metrics"]
        ]:
            w.metrics[f"delta_{t}_{m}"] = round(res["metrics"][m]["mean_difference"], 5)
        if len(res["bins"]) > 1:
            for lab, dv in zip(res["bins"], res["metrics"]["psnr"]["difference"]):
                w.metrics[f"delta_{t}_psnr_yaw{lab.rstrip('°')}"] = round(dv, 4)
    w.counts.update({"tasks": len(comp), "identities": ma[0]["benchmark"]["identities"], "seeds": len(a)})
    print("\n".join(lines[:8]))


def _plot(comp: dict, labels, yaw: list[float], path) -> None:
    """Both variants' metrics by yaw bin (solid: the method, dashed: the baseline) for the tasks that have bins."""
    bins_v = [t for t in ("cross_view", "cross_identity") if t in comp]
    if not bins_v:
        return
    tasks = {}
    for t in bins_v:
        tasks[f"{t} ({labels[0]})"] = {"by_bin": {m: v["method"] for m, v in comp[t]["metrics"].items()}}
        tasks[f"{t} ({labels[1]})"] = {"by_bin": {m: v["baseline"] for m, v in comp[t]["metrics"].items()}}
    styles = {k: ("--" if labels[1] in k else "-") for k in tasks}
    plot_vs_yaw(tasks, yaw, path, f"ablation: {labels[0]} (solid) vs {labels[1]} (dashed)", styles)


def significant_bins(metric: str, r: dict) -> tuple[int, int]:
    """(bins where the method is better and the 95% interval excludes 0, bins where it is worse and excludes 0)."""
    won = lost = 0
    for d, lo, hi in zip(r["difference"], *r["ci95"]):
        if lo > 0 or hi < 0:
            won += better(metric, d)
            lost += not better(metric, d)
    return won, lost


def better(metric: str, difference: float) -> bool:
    """Whether a method − baseline difference favours the method."""
    return difference < 0 if metric in LOWER_IS_BETTER else difference > 0


SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=(),
    parents=("eval", "eval"),  # the method's evaluations, then the baseline's (one per seed each)
    build=compare_evals,
    config=lambda cfg: {"preset": cfg.preset},
)
