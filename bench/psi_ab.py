"""A/B of Ψ recipes: stage 4's own trainer, once per recipe, on finished parents (a stage-3 store, its Ψ3d, its E_mot).

    python bench/psi_ab.py --pseudo-mv pseudo_mv@<v> [--preset learn] [--common "psi.steps=750"] \\
        "" "psi.losses.region_l1.weight=4"

The parents are named, not rebuilt: a code change that moves the upstream's versions does not cost E_mot and
stage 3 again. Each recipe (space-separated ``section.field=value`` overrides on top of ``--common``; "" is the
preset) trains into its own scratch registry under ``--scratch`` with the parents linked in, so the main
registry is untouched and a recipe trained before is reused. Prints, one JSON line per recipe, stage 4's final
held-out validation: PSNR, mouth / eye PSNR and the change correlation beside no-motion, copy-source and
Ψ3d(source), and the change correlation per validation step; appends them to ``--log``.
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
from pipeline_tasks.train_psi import train_psi  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn_common import emit_row, scratch_registry  # noqa: E402

KEYS = ("psnr", "change_correlation")  # every final metric whose name holds one of these (Ψ and its baselines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--preset", default="learn")
    ap.add_argument("--common", default="", help="overrides every recipe shares, e.g. 'psi.steps=750'")
    ap.add_argument("--pseudo-mv", required=True, help="the stage-3 store; its Ψ3d and E_mot are its parents")
    ap.add_argument("--scratch", default="/tmp/psi-ab")
    ap.add_argument("--log", default=None, help="append one JSON line per recipe here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reg = ArtifactRegistry()
    pmv = reg.resolve(args.pseudo_mv)
    ups = {p["kind"]: reg.resolve(f"{p['kind']}@{p['version']}") for p in pmv.manifest["parents"]}
    parents = [pmv, ups["psi3d"], ups["motion_encoder"]]
    for spec in args.recipes:
        cfg = load_config(args.preset, [s for s in (args.common + " " + spec).split() if s])
        scratch, _ = scratch_registry(args.scratch, spec, *parents)
        t = time.time()
        art = train_psi(cfg, *(scratch.resolve(a.ref) for a in parents), registry=scratch)
        metrics = art.manifest["metrics"]
        curve = [
            (r["step"], round(r["val_change_correlation"], 3))
            for r in (json.loads(line) for line in (art.path / "logs" / "scalars.jsonl").read_text().splitlines())
            if "val_change_correlation" in r
        ]
        row = {
            "recipe": spec or "preset",
            "common": args.common,
            "artifact": art.ref,
            "parents": [a.ref for a in parents],
            "seconds": round(time.time() - t),
            **{k: round(v, 3) for k, v in sorted(metrics.items()) if any(x in k for x in KEYS) and "step0" not in k},
            "change_correlation_by_step": curve,
        }
        emit_row(row, args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
