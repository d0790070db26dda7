"""A/B of Ψ3d recipes: stage 2a's own trainer, once per recipe, on one ``genhead_samples`` store.

    python bench/psi3d_ab.py [--preset learn] [--common "psi3d.steps=1000"] "" "psi3d.lr=2e-3" ...

Each argument is one recipe (space-separated ``section.field=value`` overrides on top of ``--common``;
"" is the preset as it is). Every recipe trains into its own scratch registry under ``--scratch`` (the
store is linked in, not copied), so the main registry is untouched; a recipe already trained there is
reused. Prints, one line per recipe, the held-out validation of stage 2a (the store's last
``psi3d.val_identities`` identities, pose 0, at the yaw bins): per-bin PSNR, the margins over copy-input,
the 0° reconstruction, soft IoU, the mouth-region PSNR and the expression change (does the render change
with the input's expression), the seconds per step, and appends them as JSON to ``--log``.

``--init psi3d@<v>``: every recipe starts from that artifact's weights (a fine-tuning A/B: same start, one
change). A bench-only hook: stage 2a itself always starts from scratch. ``--overfit K``: train on the store's
last K identities only and validate on those same K (can the recipe reproduce faces it has seen?).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipeline_tasks.train_psi3d as stage_2a  # noqa: E402
from models.checkpoints import load_checkpoint  # noqa: E402
from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.train_psi3d import Psi3dTrainer, train_psi3d  # noqa: E402
from pipeline_tasks.training.loop import CHECKPOINT  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn_common import emit_row, scratch_registry  # noqa: E402


def start_from(init) -> None:
    """Make stage 2a's trainer build its model with ``init``'s (EMA) weights instead of a fresh init."""
    build = Psi3dTrainer.build_model

    def build_model(self):
        model = build(self)
        load_checkpoint(init.path / CHECKPOINT, expected=self.cfg.model).load_into({"psi": model})
        return model

    Psi3dTrainer.build_model = build_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--preset", default="learn")
    ap.add_argument("--common", default="", help="overrides every recipe shares, e.g. 'psi3d.steps=1000'")
    ap.add_argument("--samples", default="genhead_samples@latest")
    ap.add_argument("--scratch", default="/tmp/psi3d-ab")
    ap.add_argument("--log", default=None, help="append one JSON line per recipe here")
    ap.add_argument("--init", default=None, help="start every recipe from this psi3d artifact's weights")
    ap.add_argument("--overfit", type=int, default=0, help="train and validate on the store's last K identities")
    args = ap.parse_args(argv)
    if args.overfit:
        k = args.overfit
        stage_2a.split_identities = lambda n, n_val: (np.arange(n - k, n), np.arange(n - k, n))
        args.scratch += f"-overfit{k}"  # the version cannot tell an overfit run from a normal one: keep them apart
    if args.init:
        args.scratch += "-init-" + args.init.replace("@", "-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    samples = ArtifactRegistry().resolve(args.samples)
    if args.init:
        start_from(ArtifactRegistry().resolve(args.init))
    for spec in args.recipes:
        overrides = [s for s in (args.common + " " + spec).split() if s]
        cfg = load_config(args.preset, overrides)
        scratch, linked = scratch_registry(args.scratch, spec, samples)
        t = time.time()
        art = train_psi3d(cfg, linked, registry=scratch)
        seconds = time.time() - t
        v = json.loads((art.path / "validation.json").read_text())
        bins, psnr, base = v["yaw_bins_degrees"], v["final"]["psnr"], v["baselines"]["psnr_input"]
        margins = {f"{b:+g}": round(p - c, 2) for b, p, c in zip(bins, psnr, base) if b != 0}
        novel = [p for b, p in zip(bins, psnr) if b != 0]
        row = {
            "recipe": spec or "preset",
            "common": args.common,
            "artifact": art.ref,
            "samples": samples.ref,
            "seconds": round(seconds),
            "seconds_per_step": round(seconds / cfg.psi3d.steps, 3),
            "psnr_novel": round(sum(novel) / len(novel), 2),
            "margins": margins,
            "psnr_yaw0": round(psnr[bins.index(0.0)], 2),
            "soft_iou_min": round(min(v["final"]["soft_iou"]), 3),
            "init": args.init,
            **{
                k: round(float(x), 3)
                for k, x in json.loads((art.path / "metrics.json").read_text()).items()
                if k.startswith(("val_mouth_psnr_novel", "val_eyes_psnr_novel", "expression_change"))
            },
            "history_psnr_novel": [
                (h["step"], round(sum(p for b, p in zip(bins, h["psnr"]) if b != 0) / len(novel), 2))
                for h in v["history"]
            ],
        }
        emit_row(row, args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
