"""How much of each expression coefficient one image can tell at all: the single-image ceiling of E_mot.

    python bench/emot_ceiling.py [--preset learn] [--train 100000] [--steps 4000] [--render 256] [--brow-lids-only]

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
units with ``mouth_wide``) counts as read. So, third, **at the preset's resolution**: stage 1b's own visibility
measurement (``pipeline_tasks.analyser_samples.pixels_changed_per_sample``: the store's first ``--render`` samples,
each rendered as drawn and once more with each coefficient set to 0), with the *seen* threshold at 4, 8 and 16
pixels (stage 1b uses ``SEEN_MIN_PIXELS``) to show how much the estimate depends on it. The R² that knowing every
seen coefficient exactly and nothing of an unseen one allows is ``1 − SS_unseen / SS_total``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.genhead import params as P  # noqa: E402
from models.genhead.procedural import derive  # noqa: E402
from pipeline_tasks.analyser_samples import SEEN_MIN_PIXELS, pixels_changed_per_sample, r2_ceiling  # noqa: E402
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


def resolution_ceiling(cfg, n: int) -> dict[str, dict]:
    """Per coefficient: the share of the store's first ``n`` samples (with the coefficient > 0) that do not show
    it at the stage's resolution, and the R² ceiling that leaves, at three *seen* thresholds."""
    expr, px, _ = pixels_changed_per_sample(cfg, n, progress=True)
    out = {}
    thresholds = sorted({4.0, SEEN_MIN_PIXELS, 8.0, 16.0})
    for k, name in enumerate(P.EXPRESSION_NAMES):
        y, active = expr[:, k], expr[:, k] > 0
        row = {"median_pixels_changed_when_active": float(np.median(px[active, k])) if active.any() else 0.0}
        for t in thresholds:
            seen = px[:, k] >= t
            row[f"r2_ceiling_{t:g}px"] = r2_ceiling(y, seen)
            row[f"unseen_share_of_active_{t:g}px"] = float((active & ~seen).sum() / max(int(active.sum()), 1))
        out[name] = row
        print(
            f"  {name}: median {row['median_pixels_changed_when_active']:.1f} px when active; ceiling / unseen "
            + ", ".join(
                f"{t:g} px {row[f'r2_ceiling_{t:g}px'] or 0:.3f} / {row[f'unseen_share_of_active_{t:g}px']:.2f}"
                for t in thresholds
            ),
            flush=True,
        )
    return out


@contextlib.contextmanager
def brows_fixed_by_identity():
    """Render as if brow raise did not move the brows (only the upper lids): GenHead's brow height is
    ``0.045 + 0.082·brow_height + 0.05·brow_raise − …`` with ``brow_height`` an identity factor of spread 0.30, so
    the brows' position mostly says who; what brow raise shows apart from identity is left in these renders."""
    from models.genhead import procedural

    derive_all = procedural.derive

    def derive_lids_only(shape, expression, gaze, z):
        geometry, colours = derive_all(shape, expression, gaze, z)
        raise_ = expression.clamp(*P.EXPRESSION_RANGE)[:, P.EXPRESSION_NAMES.index("brow_raise")]
        geometry["bw_y"] = geometry["bw_y"] - 0.05 * raise_
        return geometry, colours

    procedural.derive = derive_lids_only
    try:
        yield
    finally:
        procedural.derive = derive_all


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
    ap.add_argument(
        "--brow-lids-only", action="store_true", help="also the resolution ceiling with brow raise moving the lids only"
    )
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
        cfg = load_config(args.preset, [f"genhead.resolution={args.resolution}"] if args.resolution else [])
        res = stage_resolution(cfg)
        print(f"[at {res}², the store's first {args.render} samples]", flush=True)
        out[f"seen at {res}"] = resolution_ceiling(cfg, args.render)
        if args.brow_lids_only:
            print("[brow raise moving the upper lids only, not the brows]", flush=True)
            with brows_fixed_by_identity():
                out[f"seen at {res}, brow raise on the lids only"] = resolution_ceiling(cfg, args.render)
        print(f"  {time.time() - t:.0f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
