"""How much of each expression coefficient one image can tell at all: the single-image ceiling of E_mot.

    python bench/emot_ceiling.py [--preset learn] [--train 100000] [--steps 4000] [--render 256]

Stage 1b calls a coefficient *visible* when it changes pixels against the same identity's neutral face. E_mot never
sees that neutral face: it reads a coefficient from one image, where an identity's proportions can look like an
expression (a wide mouth at rest like a stretched one: GenHead's mouth half-width is ``0.078 · mouth_width ·
(1 + 0.32 · mouth_wide + …)`` with ``mouth_width`` an identity factor of spread 0.18). This script measures that
bound on GenHead's own sampling (the analyser store's ``p_neutral``/``p_single``, identities and gaze as drawn
there): every geometry row ``derive`` gives the renderer (``G``; the colours do not depend on expression, so G is
all an image can show of it, seen perfectly: every pixel, no occlusion, any resolution) → the 9 coefficients, by
an MLP trained on ``--train`` samples and scored (R²) on 20 000 others.

Two readouts, the same MLP and budget:
* **one image**: G alone: the ceiling for any single-image analyser (up to the MLP's own shortfall);
* **identity known**: G with the identity's shape α and z: a control that the MLP can invert the map (≈ 1 where
  a coefficient moves G at all). What separates the two is what identity hides.

G cannot see resolution: a cue that is there but under a pixel (the mouth cavity's height grows by 0.012 head
units with ``mouth_wide``) counts as read. So, third, **at the preset's resolution**: ``--render`` samples drawn
like the store's (expression, head pose, gaze, camera), each rendered as drawn and once more with each coefficient
set to 0, at the store's resolution; a sample's coefficient is *seen* when that changes at least
``VISIBLE_MIN_PIXELS`` pixels by more than ``VISIBLE_DELTA`` (stage 1b's thresholds, which it applies to the mean
over identities at strength 1 only). The R² that knowing every seen coefficient exactly and nothing of an unseen
one allows (an unseen one predicted by the mean of the unseen ones) is ``1 − SS_unseen / SS_total``: an estimate of
the resolution ceiling, beside the share of the coefficient's samples it did not see.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import cameras as cam  # noqa: E402
from models.genhead import params as P  # noqa: E402
from models.genhead.ground_truth import GroundTruth, identity_ids  # noqa: E402
from models.genhead.procedural import derive  # noqa: E402
from pipeline_tasks.analyser_samples import VISIBLE_DELTA, VISIBLE_MIN_PIXELS  # noqa: E402
from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.data.genhead_render import stage_resolution  # noqa: E402
from pipeline_tasks.train_motion_encoder import r2_scores  # noqa: E402


def draw(n: int, seed: int, p_neutral: float, p_single: float) -> dict[str, torch.Tensor]:
    """n independent (identity, expression, gaze) samples as the analyser store draws them."""
    g = torch.Generator().manual_seed(seed)
    return {
        "shape": torch.randn(n, len(P.SHAPE_NAMES), generator=g),
        "z": torch.randn(n, P.Z_DIM, generator=g),
        "expression": P.sample_expression(n, g, p_neutral, p_single),
        "gaze": P.sample_gaze(n, g),
    }


def features(s: dict[str, torch.Tensor], identity_known: bool) -> torch.Tensor:
    geometry, _ = derive(s["shape"], s["expression"], s["gaze"], s["z"])
    n = len(s["shape"])
    cols = [torch.as_tensor(v, dtype=torch.float32).expand(n).reshape(n, -1) for v in geometry.values()]
    if identity_known:
        cols += [s["shape"], s["z"]]
    return torch.cat(cols, 1)


def fit_r2(x_tr, y_tr, x_te, y_te, steps: int, seed: int) -> list[float | None]:
    """Held-out R² per column of an MLP regressor (standardised inputs and targets, Adam, cosine lr)."""
    keep = x_tr.std(0) > 1e-8  # constant rows carry nothing
    x_tr, x_te = x_tr[:, keep], x_te[:, keep]
    mx, sx = x_tr.mean(0), x_tr.std(0)
    my, sy = y_tr.mean(0), y_tr.std(0).clamp_min(1e-6)
    x_tr, x_te, yt = (x_tr - mx) / sx, (x_te - mx) / sx, (y_tr - my) / sy
    torch.manual_seed(seed)
    w = 256
    net = nn.Sequential(
        nn.Linear(x_tr.shape[1], w),
        nn.SiLU(),
        nn.Linear(w, w),
        nn.SiLU(),
        nn.Linear(w, w),
        nn.SiLU(),
        nn.Linear(w, y_tr.shape[1]),
    )
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=2e-5)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x_tr), (1024,), generator=g)
        loss = ((net(x_tr[i]) - yt[i]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        pred = net(x_te) * sy + my
    return r2_scores(pred.numpy(), y_te.numpy())


def resolution_ceiling(n: int, resolution: int, seed: int, p_neutral: float, p_single: float) -> dict[str, dict]:
    """Per coefficient: the share of samples (with the coefficient > 0) whose coefficient is not seen at
    ``resolution`` and the R² ceiling that leaves (module docstring)."""
    g = torch.Generator().manual_seed(seed + 3)
    ids = identity_ids(9_000 + seed, n)  # a base seed of no stage's
    e = P.sample_expression(n, g, p_neutral, p_single)
    pose, gaze = P.sample_pose(n, g), P.sample_gaze(n, g)
    cams, _ = cam.sample_cameras(n, g)
    gt = GroundTruth()

    def render(expr: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                gt.render(
                    ids[i : i + 32], cams[i : i + 32], resolution, expr[i : i + 32], pose[i : i + 32], gaze[i : i + 32]
                ).rgb
                for i in range(0, n, 32)
            ]
        )

    drawn = render(e)
    out = {}
    for k, name in enumerate(P.EXPRESSION_NAMES):
        e0 = e.clone()
        e0[:, k] = 0
        changed = (((render(e0) - drawn).abs() / 2).amax(1) > VISIBLE_DELTA).float().sum((1, 2))
        y, active = e[:, k].numpy(), e[:, k].numpy() > 0
        ss_total = float(((y - y.mean()) ** 2).sum())
        row = {"median_pixels_changed_when_active": float(np.median(changed.numpy()[active]))}
        for px in (4, VISIBLE_MIN_PIXELS, 16):  # the threshold's own effect on the estimate
            seen = (changed >= px).numpy()
            unseen = y[~seen]
            ss_unseen = float(((unseen - unseen.mean()) ** 2).sum()) if len(unseen) else 0.0
            row[f"r2_ceiling_{px:g}px"] = 1 - ss_unseen / ss_total
            row[f"unseen_share_of_active_{px:g}px"] = float((active & ~seen).sum() / max(active.sum(), 1))
        out[name] = row
        print(
            f"  {name}: median {row['median_pixels_changed_when_active']:.1f} px when active; ceiling / unseen "
            + ", ".join(
                f"{px:g} px {row[f'r2_ceiling_{px:g}px']:.3f} / {row[f'unseen_share_of_active_{px:g}px']:.2f}"
                for px in (4, VISIBLE_MIN_PIXELS, 16)
            ),
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="learn")
    ap.add_argument("--train", type=int, default=100_000)
    ap.add_argument("--test", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", type=int, default=256, help="samples rendered for the resolution ceiling (0: skip)")
    ap.add_argument("--resolution", type=int, default=None, help="render at this size (default: the store's)")
    ap.add_argument("--skip-geometry", action="store_true", help="only the resolution ceiling")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    a = load_config(args.preset).analyser_samples
    tr = draw(args.train, args.seed + 1, a.p_neutral, a.p_single)
    te = draw(args.test, args.seed + 2, a.p_neutral, a.p_single)
    out = {
        "preset": args.preset,
        "train": args.train,
        "test": args.test,
        "steps": args.steps,
        "p_neutral": a.p_neutral,
        "p_single": a.p_single,
    }
    for name, known in () if args.skip_geometry else (("one image", False), ("identity known", True)):
        t = time.time()
        r2 = fit_r2(features(tr, known), tr["expression"], features(te, known), te["expression"], args.steps, args.seed)
        out[name] = dict(zip(P.EXPRESSION_NAMES, r2))
        print(
            f"[{name}] {time.time() - t:.0f} s: " + ", ".join(f"{k} {v:.3f}" for k, v in out[name].items()), flush=True
        )
    if args.render:
        t = time.time()
        res = args.resolution or stage_resolution(load_config(args.preset))
        print(f"[at {res}², {args.render} rendered samples]", flush=True)
        out[f"seen at {res}"] = resolution_ceiling(args.render, res, args.seed, a.p_neutral, a.p_single)
        print(f"  {time.time() - t:.0f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
