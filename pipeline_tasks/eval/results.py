"""What an evaluation result holds and how it is drawn: the metrics (and which way each is better), the
error a stage-5 input is refused with, and the metric-by-yaw plot. Stage 5 (``evaluate``) writes results;
the v2 ablation compares two sets of them."""

from __future__ import annotations

from pathlib import Path

METRICS = (
    "psnr",
    "mouth_psnr",
    "eyes_psnr",
    "ssim",
    "lpips",
    "expression_error",
    "gaze_error_deg",
    "pose_error_deg",
    "identity_similarity",
    "change_correlation",
    "soft_iou",
    "depth_error",
)
LOWER_IS_BETTER = {"lpips", "expression_error", "gaze_error_deg", "pose_error_deg", "depth_error"}


class EvaluationError(ValueError):
    """The evaluation cannot run on what it was given (wrong kind, wrong preset, bad config)."""


def plot_vs_yaw(
    tasks: dict[str, dict], bins: list[float], path: Path, title: str, styles: dict[str, str] | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    present = [m for m in METRICS if any(m in res["by_bin"] for res in tasks.values())]
    cols = 4
    rows = (len(present) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(16, 3.25 * rows), squeeze=False)
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    for ax, m in zip(axes.flat, present):
        for t, res in tasks.items():
            if m in res["by_bin"]:
                ax.plot(bins, res["by_bin"][m], marker="o", lw=1.3, label=t, ls=(styles or {}).get(t, "-"))
        ax.set_title(m + (" ↓" if m in LOWER_IS_BETTER else " ↑"), fontsize=9)
        ax.set_xlabel("target yaw (°)", fontsize=8)
        ax.set_xticks(bins)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, loc="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
