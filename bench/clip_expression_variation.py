"""What self-reenactment can teach: how much each expression coefficient changes between two frames of one clip
(Ψ's training pairs) against two frames of different clips (what cross-identity reenactment asks for).

    P4D_HOME=... python bench/clip_expression_variation.py pseudo_mv@<v> [--pairs 64] [--seed 0]

Ψ learns motion from (source, driving) pairs drawn within one video; a coefficient that a clip holds still (a
per-clip smile level, say) is a change Ψ is never shown, however much it differs between people. Reads the true
labels from the synthetic videos' sidecars. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402,F401  (the torchvision shim before torchvision)
from models.genhead.params import EXPRESSION_NAMES  # noqa: E402
from storage_schemas import pseudo_mv as pm  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402


def pair_differences(clips: list[np.ndarray], pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean |Δ| per coefficient of random frame pairs within a clip, and of random pairs across the pooled frames."""
    within = np.mean(
        [np.abs(c[rng.integers(0, len(c), pairs)] - c[rng.integers(0, len(c), pairs)]).mean(0) for c in clips], 0
    )
    pooled = np.concatenate(clips)
    n = pairs * len(clips)
    across = np.abs(pooled[rng.integers(0, len(pooled), n)] - pooled[rng.integers(0, len(pooled), n)]).mean(0)
    return within, across


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pseudo_mv")
    ap.add_argument("--pairs", type=int, default=64, help="frame pairs per clip")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from psi_motion_oracle import oracle_labels

    store = ArtifactRegistry().resolve(args.pseudo_mv).path / "store.zarr"
    root = pm.open_read(store)
    clips = [oracle_labels(dict(root[v].attrs))[:, : len(EXPRESSION_NAMES)] for v in sorted(root.group_keys())]
    within, across = pair_differences(clips, args.pairs, np.random.default_rng(args.seed))
    print(f"{len(clips)} clips of {args.pseudo_mv}; {args.pairs} frame pairs per clip.\n")
    print("| coefficient | within a clip, mean abs Δ | across clips | within ÷ across |")
    print("|---|---|---|---|")
    for name, w, a in zip(EXPRESSION_NAMES, within, across):
        print(f"| {name} | {w:.3f} | {a:.3f} | {w / a if a > 0 else float('nan'):.2f} |")
    print(
        json.dumps(
            {
                "pseudo_mv": args.pseudo_mv,
                "names": list(EXPRESSION_NAMES),
                "within": [round(float(v), 4) for v in within],
                "across": [round(float(v), 4) for v in across],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
