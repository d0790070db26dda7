"""Stage 5's report: the markdown tables beside their baselines, the one-line summary and the image grids."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline_tasks.eval.benchmark_set import BenchmarkSet
from pipeline_tasks.eval.results import METRICS
from pipeline_tasks.eval.scoring import REENACT_BASELINES, SOURCE_BIN, reenactment_margins
from pipeline_tasks.training.grid import save_image_grid
from storage_schemas.artifacts import Artifact


# ---------------------------------------------------------------- outputs
def save_grid(path: Path, src, drv, pred, truth, cols: list[str], bench: BenchmarkSet, title: str) -> None:
    """Per identity two rows: [source, (driving), prediction at each camera] and [source, (driving), truth]."""
    rows, titles = [], []
    for i in range(len(src)):
        lead = [src[i]] + ([drv[i]] if drv is not None else [])
        rows.append(torch.stack(lead + list(pred[i])))
        rows.append(torch.stack(lead + list(truth[i])))
        titles += [f"id {i} pred", f"id {i} truth"]
    save_image_grid(torch.stack(rows), path, col_titles=cols, row_titles=titles, title=title)


def _fmt(v: float, m: str) -> str:
    return f"{v:.2f}" if m in ("psnr", "mouth_psnr", "eyes_psnr", "gaze_error_deg", "pose_error_deg") else f"{v:.3f}"


def _table(res: dict) -> list[str]:
    ms = [m for m in METRICS if m in res["by_bin"]]
    lines = ["| bin | " + " | ".join(ms) + " |", "|---" * (len(ms) + 1) + "|"]
    for i, lab in enumerate(res["bins"]):
        lines.append(f"| {lab} | " + " | ".join(_fmt(res["by_bin"][m][i], m) for m in ms) + " |")
    if len(res["bins"]) > 1:
        what = f"mean without {', '.join(res['mean_excludes'])}" if res.get("mean_excludes") else "mean"
        lines.append(f"| **{what}** | " + " | ".join(f"**{_fmt(res['mean'][m], m)}**" for m in ms) + " |")
    return lines


def _margin_table(result: dict) -> list[str]:
    """Ψ3d against every baseline per yaw bin, the margin over copy-input, and the geometry."""
    t = result["tasks"]
    nv, base, mean = t["novel_view"], t["input_as_prediction"], t.get("mean_training_image")
    head = "| bin | Ψ3d PSNR | copy-input PSNR | margin | mean-image PSNR | soft IoU | depth error | pose error ° |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for j, lab in enumerate(nv["bins"]):
        m = nv["by_bin"]
        lines.append(
            f"| {lab}{' (source view: reconstruction)' if lab == SOURCE_BIN else ''} | {m['psnr'][j]:.2f} | "
            f"{base['by_bin']['psnr'][j]:.2f} | {m['psnr'][j] - base['by_bin']['psnr'][j]:+.2f} | "
            f"{mean['by_bin']['psnr'][j] if mean else float('nan'):.2f} | {m['soft_iou'][j]:.3f} | "
            f"{m['depth_error'][j]:.3f} | {m['pose_error_deg'][j]:.1f} |"
        )
    return lines


def reenact_table(result: dict) -> list[str]:
    """Mean (|yaw| bins, 0° excluded) of the reenactment tasks and their baselines, one row each."""
    t = result["tasks"]
    cols = (
        "psnr",
        "mouth_psnr",
        "eyes_psnr",
        "expression_error",
        "change_correlation",
        "identity_similarity",
        "soft_iou",
    )
    lines = ["| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in ("cross_identity", "cross_view") + REENACT_BASELINES:
        if name in t:
            lines.append(
                f"| {name} | "
                + " | ".join(_fmt(t[name]["mean"][c], c) if c in t[name]["mean"] else "–" for c in cols)
                + " |"
            )
    extra = {**reenactment_margins(result, "cross_identity"), **reenactment_margins(result, "cross_view")}
    if extra:
        lines += ["", "; ".join(f"{k} {v:+.3f}" if "margin" in k else f"{k} {v:.3f}" for k, v in extra.items())]
    return lines


TASK_DOC = {
    "novel_view": "Ψ3d(source) rendered at each yaw bin vs the true render of the source identity and expression.",
    "input_as_prediction": "baseline: the source image itself taken as the prediction at every bin (at 0° it *is* the "
    "truth: identical images, PSNR at its 100 dB ceiling — compare the other bins).",
    "mean_training_image": "baseline: the mean image of the training store taken as the prediction at every bin.",
    "self_reenactment": "A driven by A's own image (expression β_d from B's video), target at the driving camera θ_d.",
    "cross_view": "the same reenactment rendered at every yaw bin vs the true render of A with β_d.",
    "cross_identity_driving_view": "A driven by B's image with β_d, at θ_d, vs the true render of A with β_d.",
    "cross_identity": "A driven by B's image with β_d, at every yaw bin, vs the true render of A with β_d.",
    "no_motion": "baseline: Ψ driven by the source's own motion (v_d = v_s) vs the truth with β_d — "
    "what no reenactment scores.",
    "no_motion_driving_view": "baseline: no reenactment (v_d = v_s), at θ_d.",
    "copy_source": "baseline: the source image itself as the prediction at every bin (vs the truth with β_d).",
    "copy_source_driving_view": "baseline: the source image itself, at θ_d.",
    "psi3d_source": "baseline: Ψ3d(source) — what Ψ starts from — rendered at every bin (vs the truth with β_d).",
    "psi3d_source_driving_view": "baseline: Ψ3d(source) rendered at θ_d.",
}


def report_markdown(result: dict, art: Artifact | None = None) -> str:
    b, ins = result["benchmark"], result["instruments"]
    lines = [
        f"# Evaluation of `{result['model']}` ({result['preset']})",
        "",
        f"Benchmark v{b['version']} `{b['digest']}`: {b['identities']} held-out identities × yaw bins "
        f"{', '.join(f'{y:+g}°' for y in b['yaw_bins_degrees'])} (pipeline_tasks/eval/benchmark_set.py).",
        "",
        f"Instruments: analyser `{ins['analyser']}` (trained with a seed other than E_mot's), pose probe "
        f"(held-out error {ins['pose_probe_heldout_error_deg']:.2f}°), LPIPS {ins['lpips_net']} "
        + (
            "(ImageNet trunk)"
            if ins["lpips_real_trunk"]
            else "(**random trunk**: ImageNet weights absent; compare LPIPS only within this project)"
        )
        + ".",
        "",
        "Floors (instrument error on the ground-truth renders themselves): "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["floors"].items()),
        "",
    ]
    if result.get("ceilings"):
        lines += [
            "Ceilings (a perfect model blurred by σ px, scored against the sharp truth): "
            + ", ".join(f"{k} {v:.3f}" for k, v in result["ceilings"].items()),
            "",
        ]
    if result["model_kind"] == "psi3d":
        lines += (
            [
                "## Ψ3d beside its baselines",
                "",
                "Margin = Ψ3d PSNR − copy-input PSNR on the same images. Soft IoU = Σ min(α, α̂) / Σ max(α, α̂) of the "
                "rendered alpha against the true one (a uniform fog scores ~0.4); depth error = mean |depth − true| "
                "(scene units, head box 1.3) where the true alpha > 0.5.",
                "",
            ]
            + _margin_table(result)
            + [""]
        )
    else:
        lines += (
            [
                "## Reenactment beside its baselines",
                "",
                "Expression error is read by the evaluation analyser (floor above); mouth/eyes PSNR is inside "
                "the projected mouth and eye regions (models/genhead/regions.py); "
                "change correlation = corr(Ψ(s, d) − Ψ(s, s), truth(β_d) − truth(β_s)) per image at the same camera.",
                "",
            ]
            + reenact_table(result)
            + [""]
        )
    for t, res in result["tasks"].items():
        lines += [f"## {t.replace('_', ' ')}", "", TASK_DOC.get(t, ""), ""] + _table(res) + [""]
    pv = result.get("pseudo_views")
    if pv:
        lines += [
            "## pseudo views (stage 3) against the truth",
            "",
            "Stage 3's K views of each frame of the synthetic videos vs the true renders at their cameras, beside "
            "the frame itself copied to every view (copy-input).",
            "",
            "| videos | frames | views | PSNR views | PSNR copy-frame | margin | soft IoU views |",
            "|---|---|---|---|---|---|---|",
            f"| {pv['videos']} | {pv['frames']} | {pv['views']} | {pv['psnr_views']:.2f} | "
            f"{pv['psnr_copy_frame']:.2f} | "
            f"{pv['margin_vs_copy_frame']:+.2f} | {pv['soft_iou_views']:.3f} |",
            "",
        ]
    lines += ["## Pictures", ""]
    for g in ("novel_view", "self_reenactment", "cross_identity"):
        if (result["model_kind"] == "psi3d") == (g == "novel_view"):
            lines.append(f"![{g}](grids/{g}.png)")
    lines += ["", "![metrics vs yaw](plots/metrics_vs_yaw.png)", ""]
    if art is not None:
        lines += [f"model under test: `{art.ref}` at `{art.path}`", ""]
    return "\n".join(lines)


def summary_line(result: dict) -> str:
    t = result["tasks"]
    if result["model_kind"] == "psi3d":
        nv, base = t["novel_view"], t["input_as_prediction"]
        per = ", ".join(
            f"{lab} {p:.2f}/{c:.2f}/{iou:.2f}"
            for lab, p, c, iou in zip(
                nv["bins"], nv["by_bin"]["psnr"], base["by_bin"]["psnr"], nv["by_bin"]["soft_iou"]
            )
        )
        return (
            f"eval psi3d: novel-view PSNR {nv['mean']['psnr']:.2f} dB (0° excluded) "
            f"vs copy-input {base['mean']['psnr']:.2f}; "
            f"by yaw (Ψ3d/copy-input/soft IoU): {per}"
        )
    parts = [
        f"{name} PSNR {t[name]['mean']['psnr']:.2f} / expr err {t[name]['mean']['expression_error']:.3f}"
        for name in ("self_reenactment", "cross_view", "cross_identity", "no_motion")
        if name in t
    ]
    return "eval psi: " + "; ".join(parts)
