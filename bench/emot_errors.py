"""Where a trained E_mot's held-out error comes from, per expression coefficient.

    python bench/emot_errors.py ENCODER [ENCODER ...] --store STORE [--preset learn]
        [--set "analyser_samples.n_identities=8704"] [--val-identities 64] [--out report.json]

ENCODER is a ``motion_encoder`` artifact folder (or its checkpoint), STORE an ``analyser_samples`` store
(``…/store.zarr``) whose last ``--val-identities`` identities no encoder was trained on (the store it was trained
on, split as stage 2b splits it, or a larger store of the same seed whose extra identities it never saw);
``--preset``/``--set`` must give that store's config (its samples are re-rendered and checked against the stored
labels). With several encoders, all are read on the same held-out samples, and each R² after the first comes
with its paired difference to the first's (95% interval, identities resampled): more held-out identities than
stage 2b's 64 narrow the intervals enough to tell encoders apart. For each coefficient and encoder:

* held-out R² with its 95% interval (identities resampled) and the same on as many training samples (a gap is
  generalisation, no gap is what the model reads);
* the **ceiling of these very samples** (stage 1b's measurement, ``pixels_changed_per_sample`` on the held-out
  rows: each rendered as drawn and with the coefficient set to 0, seen at ≥ ``SEEN_MIN_PIXELS`` px);
* the residual sum of squares split by where it falls, as a share of SS_total (they add to 1 − R²): samples where
  the coefficient is 0 (false readings), active but unseen (< 4 px), faint (4–8 px), clear (≥ 8 px);
* the mean error on the active samples (negative: read too weak), held out and in training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.motion import load_motion_encoder  # noqa: E402
from pipeline_tasks.analyser_samples import SEEN_MIN_PIXELS, pixels_changed_per_sample, r2_ceiling  # noqa: E402
from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.data.images import to_model_images  # noqa: E402
from pipeline_tasks.data.labelled_views import LabelledViews  # noqa: E402
from pipeline_tasks.train_motion_encoder import bootstrap_r2_ci, group_resamples  # noqa: E402

FAINT_MAX_PIXELS = 8.0


def store_rows(data: LabelledViews, ids: np.ndarray) -> list[tuple[int, int]]:
    """(identity seed, sample index within the identity) of store rows ``ids``: what ``sample_row`` draws from."""
    first = {}
    for i, ident in enumerate(data.identity):
        first.setdefault(int(ident), i)
    return [(int(data.identity[i]), int(i - first[int(data.identity[i])])) for i in ids]


@torch.no_grad()
def predict(encoder, data: LabelledViews, ids: np.ndarray, batch: int = 256) -> np.ndarray:
    """Expression read from the first view of each sample ``[len(ids), E]``."""
    out = []
    for s in range(0, len(ids), batch):
        imgs = to_model_images(data.get_images(ids[s : s + batch]))[:, 0]
        out.append(encoder.predict(imgs)["expression"].numpy())
    return np.concatenate(out).astype(np.float64)


def r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def paired_r2_difference(
    y: np.ndarray, p: np.ndarray, q: np.ndarray, groups: np.ndarray, reps: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """R²(q) − R²(p) on the same rows, and its 95% interval resampling whole groups (identities)."""
    draws = []
    for rows in group_resamples(groups, reps, seed):
        if np.ptp(y[rows]) > 0:
            draws.append(r2(y[rows], q[rows]) - r2(y[rows], p[rows]))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return r2(y, q) - r2(y, p), float(lo), float(hi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoders", nargs="+")
    ap.add_argument("--store", required=True)
    ap.add_argument("--preset", default="learn")
    ap.add_argument("--set", default="", help="the store's config overrides (space-separated section.field=value)")
    ap.add_argument("--val-identities", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="of the training subset")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--cache", type=Path, default=None, help="npz of the held-out samples' pixel counts (reused if there)"
    )
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    cfg = load_config(args.preset, [s for s in args.set.split() if s])
    data = LabelledViews(args.store)
    train_ids, val_ids = data.split(args.val_identities)
    sub = np.sort(np.random.default_rng(args.seed).choice(train_ids, len(val_ids), replace=False))
    if args.cache and args.cache.exists():
        cached = np.load(args.cache)
        expr, px = cached["expression"], cached["pixels_changed"]
        if len(expr) != len(val_ids):
            raise SystemExit(f"{args.cache}: {len(expr)} samples, not this store's {len(val_ids)} held-out ones")
    else:
        expr, px, _ = pixels_changed_per_sample(cfg, 0, rows=store_rows(data, val_ids), progress=True)
        if args.cache:
            np.savez(args.cache, expression=expr, pixels_changed=px)
    if not np.allclose(expr, data.expression[val_ids], atol=1e-5):
        raise SystemExit(f"{args.store}: re-drawn samples differ from its labels: --preset/--set are not its config")
    groups = np.asarray(data.identity)[val_ids]
    y_tr = data.expression[sub].astype(np.float64)
    out: dict = {
        "store": str(args.store),
        "held_out_identities": int(len(np.unique(groups))),
        "held_out_samples": len(val_ids),
        "encoders": [],
    }
    first = None
    for path in args.encoders:
        enc = load_motion_encoder(path)
        p_val, p_tr = predict(enc, data, val_ids), predict(enc, data, sub)
        ci = bootstrap_r2_ci(p_val, expr, groups, reps=1000)
        print(
            f"\n{path} on {out['held_out_identities']} held-out identities ({len(val_ids)} samples, first view)\n\n"
            "| coefficient | R² held out (95%) | R² train | ceiling (these samples) | false readings | unseen | faint "
            "| clear | bias active (held out / train) |"
            + (" R² − first (95%) |" if first is not None else "")
            + "\n|---|---|---|---|---|---|---|---|---|"
            + ("---|" if first is not None else "")
        )
        rec: dict = {"encoder": str(path), "per": {}}
        for k, name in enumerate(data.expression_names):
            y, p = expr[:, k], p_val[:, k]
            sst = float(((y - y.mean()) ** 2).sum())
            res = (y - p) ** 2
            active = y > 0
            masks = {
                "zero": ~active,
                "unseen": active & (px[:, k] < SEEN_MIN_PIXELS),
                "faint": active & (px[:, k] >= SEEN_MIN_PIXELS) & (px[:, k] < FAINT_MAX_PIXELS),
                "clear": active & (px[:, k] >= FAINT_MAX_PIXELS),
            }
            a_tr = y_tr[:, k] > 0
            row = {
                "r2_held_out": r2(y, p),
                "r2_held_out_ci95": ci[k],
                "r2_train": r2(y_tr[:, k], p_tr[:, k]),
                "r2_ceiling": r2_ceiling(y, px[:, k] >= SEEN_MIN_PIXELS),
                "residual_share": {g: float(res[m].sum() / sst) for g, m in masks.items()},
                "samples": {g: int(m.sum()) for g, m in masks.items()},
                "bias_active_held_out": float((p[active] - y[active]).mean()) if active.any() else None,
                "bias_active_train": float((p_tr[a_tr, k] - y_tr[a_tr, k]).mean()) if a_tr.any() else None,
            }
            if first is not None:
                row["r2_minus_first"] = paired_r2_difference(y, first[:, k], p, groups)
            rec["per"][name] = row
            s, n = row["residual_share"], row["samples"]
            lo, hi = ci[k] or (float("nan"), float("nan"))
            line = (
                f"| {name} | {row['r2_held_out']:.2f} ({lo:.2f}…{hi:.2f}) | {row['r2_train']:.2f} "
                f"| {row['r2_ceiling'] or 0:.2f} "
                + " ".join(f"| {s[g]:.3f} ({n[g]})" for g in masks)
                + f" | {row['bias_active_held_out'] or 0:+.3f} / {row['bias_active_train'] or 0:+.3f} |"
            )
            if first is not None:
                d, dlo, dhi = row["r2_minus_first"]
                line += f" {d:+.3f} ({dlo:+.3f}…{dhi:+.3f}) |"
            print(line, flush=True)
        out["encoders"].append(rec)
        first = p_val if first is None else first
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
