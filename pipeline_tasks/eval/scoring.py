"""Stage 5's scoring: per-image scores into per-bin task results, the instrument floors, the margins of Ψ over
its baselines and the headline numbers of an evaluation."""

from __future__ import annotations

import math
from typing import Any

import torch

SOURCE_BIN = "+0°"  # the source camera's bin: reconstruction, never inside a novel-view mean


def task_result(per_image: dict[str, torch.Tensor], n: int, labels: list[str]) -> dict[str, Any]:
    """Reshape per-image values ``[n·V]`` → ``[n][V]`` lists, with per-bin means and the mean over
    the bins other than the source view (0°: reconstruction, reported apart under ``source_view``)."""
    v = len(labels)
    keep = [j for j, lab in enumerate(labels) if lab != SOURCE_BIN] if v > 1 else list(range(v))
    out: dict[str, Any] = {
        "bins": labels,
        "per_image": {},
        "by_bin": {},
        "mean": {},
        "mean_excludes": [lab for j, lab in enumerate(labels) if j not in keep],
    }
    if len(keep) < v:
        out["source_view"] = {}
    for k, val in per_image.items():
        arr = val.reshape(n, v).double()
        out["per_image"][k] = arr.tolist()
        out["by_bin"][k] = arr.mean(0).tolist()
        out["mean"][k] = float(arr[:, keep].mean())
        if len(keep) < v:
            out["source_view"][k] = float(arr[:, labels.index(SOURCE_BIN)].mean())
    return out


def instrument_floors(truth_read: dict, expression, gaze, yaw_pitch_deg) -> dict[str, float]:
    """What the instruments get wrong on the ground truth itself (the best a prediction can score)."""
    return {
        "expression_error": float((truth_read["expression"] - expression).abs().mean()),
        "gaze_error_deg": float(torch.rad2deg((truth_read["gaze"] - gaze).abs()).mean()),
        "pose_error_deg": float((truth_read["pose_deg"] - yaw_pitch_deg).norm(dim=1).mean()),
    }


BLUR_SIGMAS_PX = (1.0, 2.0)  # Gaussian blurs of the truth at which the expression floor is also read


def blurred_expression_floors(scorer, truth: torch.Tensor, expression: torch.Tensor) -> dict[str, float]:
    """The expression floor on the truth blurred by σ px (``BLUR_SIGMAS_PX``): how much of an expression error is
    the instrument misreading a soft render, not a wrong expression. A sharp copy of the source with the wrong
    expression can score better than a soft render with the right one when these floors are high."""
    out = {}
    for sigma in BLUR_SIGMAS_PX:
        read = scorer.analyse(_blur(truth, sigma))
        out[f"expression_error_truth_blurred_{sigma:g}px"] = float((read["expression"] - expression).abs().mean())
    return out


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    k = 2 * int(math.ceil(3 * sigma)) + 1
    return gaussian_blur(x.float(), [k, k], [sigma, sigma])


def blurred_change_ceilings(truth_changed: torch.Tensor, truth_base: torch.Tensor) -> dict[str, float]:
    """The change correlation a perfect but soft model reaches: both truths blurred by σ px (``BLUR_SIGMAS_PX``),
    scored against the sharp ones. Ψ renders at a fraction of the image resolution, so its change score is bounded
    by its sharpness as well as by its motion: this puts the 0.5 target in scale."""
    from pipeline_tasks.eval.metrics import change_correlation

    return {
        f"change_correlation_truth_blurred_{sigma:g}px": float(
            change_correlation(_blur(truth_changed, sigma), _blur(truth_base, sigma), truth_changed, truth_base).mean()
        )
        for sigma in BLUR_SIGMAS_PX
    }


PREFIX = {
    "novel_view": "nvs",
    "input_as_prediction": "baseline_input",
    "mean_training_image": "baseline_mean_image",
    "self_reenactment": "self",
    "cross_view": "cross_view",
    "cross_identity_driving_view": "cross_id_driving_view",
    "cross_identity": "cross_id",
    "no_motion": "baseline_no_motion",
    "no_motion_driving_view": "baseline_no_motion_driving_view",
    "copy_source": "baseline_copy_source",
    "copy_source_driving_view": "baseline_copy_source_driving_view",
    "psi3d_source": "baseline_psi3d",
    "psi3d_source_driving_view": "baseline_psi3d_driving_view",
}


REENACT_BASELINES = ("no_motion", "copy_source", "psi3d_source")


def reenactment_margins(result: dict, task: str = "cross_identity") -> dict[str, float]:
    """``task`` against the reenactment baselines: expression error as a fraction of no-motion's, PSNR
    margins over copy-source at the |yaw| ≥ 15° bins (their minimum), mouth/eye PSNR over Ψ3d(source)."""
    t = result["tasks"]
    if task not in t:
        return {}
    res, out, p = t[task], {}, PREFIX.get(task, task)
    nm, cs, p3 = (t.get(b) for b in REENACT_BASELINES)
    if nm and nm["mean"].get("expression_error"):
        out[f"{p}_expression_error_vs_no_motion"] = res["mean"]["expression_error"] / nm["mean"]["expression_error"]
    if cs:
        far = [j for j, lab in enumerate(res["bins"]) if abs(float(lab.rstrip("°"))) >= 15]
        if far:
            out[f"{p}_margin_vs_copy_source_min"] = min(res["by_bin"]["psnr"][j] - cs["by_bin"]["psnr"][j] for j in far)
    if p3:
        for region in ("mouth_psnr", "eyes_psnr"):
            if region in res["mean"] and region in p3["mean"]:
                out[f"{p}_{region}_margin_vs_psi3d"] = res["mean"][region] - p3["mean"][region]
    return out


def headline_metrics(result: dict) -> dict[str, float]:
    """Scalars for the manifest/catalog: every task's mean metrics, and PSNR/LPIPS per yaw bin of the main tasks."""
    out: dict[str, float] = {}
    for t, res in result["tasks"].items():
        p = PREFIX.get(t, t)
        for m, val in res["mean"].items():
            out[f"{p}_{m}"] = round(val, 5)
        if t in ("novel_view", "input_as_prediction", "cross_view", "cross_identity"):
            for j, lab in enumerate(res["bins"]):
                y = lab.rstrip("°")
                for m in ("psnr", "lpips", "soft_iou", "depth_error", "pose_error_deg"):
                    if m in res["by_bin"] and (m in ("psnr", "lpips") or t == "novel_view"):
                        out[f"{p}_{m}_yaw{y}"] = round(res["by_bin"][m][j], 5)
    nv, base = result["tasks"].get("novel_view"), result["tasks"].get("input_as_prediction")
    if nv and base:
        margins = {
            lab: a - c
            for lab, a, c in zip(nv["bins"], nv["by_bin"]["psnr"], base["by_bin"]["psnr"])
            if lab != SOURCE_BIN
        }
        for lab, d in margins.items():
            out[f"nvs_margin_vs_input_yaw{lab.rstrip('°')}"] = round(d, 4)
        out["nvs_margin_vs_input_min"] = round(min(margins.values()), 4) if margins else None
        out["nvs_soft_iou_min"] = round(min(nv["by_bin"]["soft_iou"]), 5)
    for task in ("cross_identity", "cross_view"):
        out.update({k: round(v, 5) for k, v in reenactment_margins(result, task).items()})
    for k, val in (result.get("pseudo_views") or {}).items():
        if isinstance(val, (int, float)):
            out[f"pseudo_views_{k}"] = round(float(val), 5)
    for k, val in result["floors"].items():
        out[f"floor_{k}"] = round(val, 5)
    out["benchmark_digest"] = result["benchmark"]["digest"]
    return out
