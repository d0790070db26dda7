"""How the evaluation analyser reads soft renders: its expression error on the benchmark's truth, sharp and
blurred, beside a perfect no-motion model (the truth with the source's expression) sharp and blurred.

    python bench/eval_instrument_floors.py eval_analyser@<v> [--preset learn]

If the blurred truth (the right expression, soft) reads worse than the sharp no-motion truth (the wrong
expression, sharp), the instrument prefers sharpness over expression, and an expression-error ratio of a soft
model against no-motion cannot be read as it stands. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import models  # noqa: E402,F401  (the torchvision shim before torchvision)
from pipeline_tasks import stages  # noqa: E402
from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.eval.instruments import Scorer, fit_pose_probe, get_benchmark  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("analyser")
    ap.add_argument("--preset", default="learn")
    args = ap.parse_args(argv)
    from torchvision.transforms.functional import gaussian_blur

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = load_config(args.preset)
    analyser = stages.load(ArtifactRegistry().resolve(args.analyser), device="cpu")
    probe, _ = fit_pose_probe(analyser, cfg, "cpu")
    scorer = Scorer(analyser, probe, cfg.eval.lpips_net, "cpu")
    bench = get_benchmark(cfg)
    r = bench.render()
    v = r["reenact_targets"].shape[1]
    expression = bench.driving_expression.repeat_interleave(v, 0)
    images = {"truth": r["reenact_targets"].flatten(0, 1), "no_motion_truth": r["nvs_targets"].flatten(0, 1)}
    row = {"analyser": args.analyser, "preset": args.preset, "images": len(expression)}
    with torch.no_grad():
        for name, img in images.items():
            for sigma in (0.0, 0.5, 1.0, 1.5, 2.0):
                x = img if sigma == 0 else gaussian_blur(img, [2 * int(3 * sigma + 0.999) + 1] * 2, [sigma, sigma])
                err = (scorer.analyse(x)["expression"] - expression).abs().mean()
                row[f"{name}_blur{sigma:g}px"] = round(float(err), 4)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
