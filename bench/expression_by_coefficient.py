"""Which expressions a Ψ transfers: stage 5's expression error split by coefficient, cross-identity at the yaw bins
(0° excluded), for Ψ, no motion (v_d = v_s), Ψ3d(source), copy-source and the truth sharp and blurred by 2 px.

    P4D_HOME=... python bench/expression_by_coefficient.py psi@<v> eval_analyser@<v> [--preset learn]

The mean error of stage 5 averages nine coefficients, most of them near zero for most faces: a Ψ that opens the
jaw right and nothing else moves it little. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import models  # noqa: E402,F401  (the torchvision shim before torchvision)
from models.genhead.params import EXPRESSION_NAMES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from learn_common import stage5_reenactment_cli

    args, s5 = stage5_reenactment_cli(__doc__, argv)
    from torchvision.transforms.functional import gaussian_blur

    run, re, scorer, keep, psi3d = s5.run, s5.re, s5.scorer, s5.keep, s5.psi3d
    r, flat = run.renders, run.flat
    images = {
        "Ψ cross-identity": flat(run.run_net(r["source"], re.m_s, re.m_cross, re.cams)[:, 1:]),
        "no motion": flat(run.run_net(r["source"], re.m_s, re.m_s, re.cams)[:, 1:]),
        "Ψ3d(source)": flat(run.run_net(r["source"], cams=re.cams, model=psi3d)[:, 1:]),
        "copy source": run.rep(r["source"]),
        "truth": re.truth_bins,
        "truth blurred 2 px": gaussian_blur(re.truth_bins.float(), [13, 13], [2.0, 2.0]),
    }
    expression = re.known_bins[0][keep]
    spread = expression.std(0)
    rows = {}
    with torch.no_grad():
        for name, img in images.items():
            err = (scorer.analyse(img)["expression"][keep] - expression).abs().mean(0)
            rows[name] = [round(float(e), 4) for e in err]
    print(f"| | {' | '.join(EXPRESSION_NAMES)} | mean |")
    print("|---" * (len(EXPRESSION_NAMES) + 2) + "|")
    print(f"| spread of the truth (std) | {' | '.join(f'{s:.3f}' for s in spread)} | |")
    for name, errs in rows.items():
        print(f"| {name} | {' | '.join(f'{e:.3f}' for e in errs)} | {sum(errs) / len(errs):.3f} |")
    print(json.dumps({"psi": args.psi, "analyser": args.analyser, "names": EXPRESSION_NAMES, "errors": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
