"""A/B of E_mot recipes: stage 2b's own trainer, once per recipe, on the registry's analyser store.

    python bench/motion_encoder_ab.py [--preset tiny] "" \
        "motion_encoder.lr=3e-4 motion_encoder.lr_final_fraction=1.0" ...

Each argument is one recipe (space-separated ``section.field=value`` overrides; "" is the preset as it is).
Every recipe trains into its own scratch registry under ``--scratch`` (the analyser store is linked in,
not copied), so the main registry is untouched; a recipe already trained there is reused. Prints held-out
R² per coefficient, the 9-expression mean and the motion embedding's identity top-1, one line per recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.train_motion_encoder import train_motion_encoder  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn_common import scratch_registry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--samples", default="analyser_samples@latest")
    ap.add_argument("--scratch", default="/tmp/emot-ab")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reg = ArtifactRegistry()
    samples = reg.resolve(args.samples)
    for spec in args.recipes:
        cfg = load_config(args.preset, [s for s in spec.split() if s])
        scratch, linked = scratch_registry(args.scratch, spec, samples)
        t = time.time()
        art = train_motion_encoder(cfg, linked, registry=scratch)
        m = json.loads((art.path / "metrics.json").read_text())
        r2 = {k: round(v, 2) for k, v in m["r2"].items() if v is not None}
        print(
            f"[{spec or 'preset'}] {art.ref} {time.time() - t:.0f} s: mean {m['r2_expression_mean']:.3f}, "
            f"motion identity top-1 {m['motion_identity_retrieval_top1']:.3f}, {r2}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
