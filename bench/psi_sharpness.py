"""How sharp Ψ renders, in the units the learn targets are scaled in: the Gaussian blur σ (px, at the benchmark's
64²) of the truth that Ψ's outputs match best, and what a perfect model blurred by that σ scores on the two
expression targets (change correlation, expression error vs no motion).

    P4D_HOME=... python bench/psi_sharpness.py psi@<v> eval_analyser@<v> [--preset learn]

Stage 5 reports the targets beside the truth blurred by 1 and 2 px; this says where Ψ (and what it starts from,
Ψ3d(source)) sits on that scale. Cross-identity at the yaw bins, 0° excluded. For each image the σ on the grid
that maximises PSNR(blur_σ(truth), prediction); the table gives the median and quartiles of that σ, and per σ the
mean PSNR, the change correlation of the blurred truth and its expression error. Prints Markdown and one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import models  # noqa: E402,F401  (the torchvision shim before torchvision)
from pipeline_tasks.eval.metrics import change_correlation  # noqa: E402

SIGMAS_PX = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``[N,3,H,W]`` images by ``sigma`` px (identity at 0)."""
    from torchvision.transforms.functional import gaussian_blur

    if sigma <= 0:
        return x.float()
    k = 2 * int(3 * sigma + 0.5) + 1
    return gaussian_blur(x.float(), [k, k], [sigma, sigma])


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of two ``[N,3,H,W]`` batches in [−1, 1]."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


def best_sigma(prediction: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the σ of ``SIGMAS_PX`` whose blurred truth is nearest the prediction, and the PSNR per σ."""
    table = torch.stack([psnr_per_image(blur(truth, s), prediction) for s in SIGMAS_PX], 1)  # [N, S]
    return torch.tensor(SIGMAS_PX)[table.argmax(1)], table


def main(argv: list[str] | None = None) -> int:
    from learn_common import stage5_reenactment_cli

    args, s5 = stage5_reenactment_cli(__doc__, argv)
    run, re, scorer, keep, psi3d = s5.run, s5.re, s5.scorer, s5.keep, s5.psi3d
    r, flat = run.renders, run.flat
    truth, truth_base = re.truth_bins[keep], re.truth_source_expr[keep]
    with torch.no_grad():
        predictions = {
            "Ψ cross-identity": flat(run.run_net(r["source"], re.m_s, re.m_cross, re.cams)[:, 1:])[keep],
            "no motion": flat(run.run_net(r["source"], re.m_s, re.m_s, re.cams)[:, 1:])[keep],
            "Ψ3d(source)": flat(run.run_net(r["source"], cams=re.cams, model=psi3d)[:, 1:])[keep],
        }
        expression = re.known_bins[0][keep]
        no_motion_err = float((scorer.analyse(predictions["no motion"])["expression"] - expression).abs().mean())
        per_sigma = []
        for s in SIGMAS_PX:
            err = float((scorer.analyse(blur(truth, s))["expression"] - expression).abs().mean())
            corr = float(change_correlation(blur(truth, s), blur(truth_base, s), truth, truth_base).mean())
            per_sigma.append({"sigma_px": s, "expression_ratio": err / no_motion_err, "change_correlation": corr})
        rows = {}
        for name, pred in predictions.items():
            # against the truth it should match: no motion is the source's expression, so its target is truth_base
            target = truth_base if name == "no motion" else truth
            sig, table = best_sigma(pred, target)
            q = torch.quantile(sig, torch.tensor([0.25, 0.5, 0.75]))
            rows[name] = {
                "sigma_quartiles_px": [round(float(v), 2) for v in q],
                "psnr_by_sigma": [round(float(v), 2) for v in table.mean(0)],
            }
    print(
        f"Benchmark: {int(keep.sum())} cross-identity images (0° excluded); "
        f"no-motion expression error {no_motion_err:.3f}.\n"
    )
    print("| | " + " | ".join(f"σ {s:g} px" for s in SIGMAS_PX) + " | best σ (quartiles) |")
    print("|---" * (len(SIGMAS_PX) + 2) + "|")
    for name, row in rows.items():
        q = row["sigma_quartiles_px"]
        print(
            f"| PSNR of {name} vs the truth blurred by σ | "
            + " | ".join(f"{v:.2f}" for v in row["psnr_by_sigma"])
            + f" | {q[1]:g} ({q[0]:g}…{q[2]:g}) |"
        )
    print(
        "| change correlation of the blurred truth | "
        + " | ".join(f"{p['change_correlation']:.3f}" for p in per_sigma)
        + " | |"
    )
    print(
        "| its expression error ÷ no motion's | "
        + " | ".join(f"{p['expression_ratio']:.2f}" for p in per_sigma)
        + " | |"
    )
    print(
        json.dumps(
            {"psi": args.psi, "analyser": args.analyser, "sigmas_px": SIGMAS_PX, "rows": rows, "per_sigma": per_sigma}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
