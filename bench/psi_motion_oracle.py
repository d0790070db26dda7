"""Can Ψ learn motion at all? Ψ trained on a pseudo multi-view store whose motion embeddings are the
synthetic world's *true* labels (expression + gaze, z-scored, zero-padded to ``motion_dim``) beside the
same training on E_mot's embeddings. It separates the two suspects of "Ψ equals no-motion": an E_mot
that carries no expression, or a Ψ (cross-attention, budget, objective) that cannot use one.

Usage (after a pipeline run of the same preset has made its stage-3 store):
    python bench/psi_motion_oracle.py [--preset tiny] [--set 'videos.n_videos=16 psi.steps=400'] \
        [--variants oracle,emot]

Stages 1–2 come from the registry (``psi3d@latest``, ``motion_encoder@latest``); the videos and stage-3
store are built (or reused) for the preset with ``--set`` applied.

Writes ``bench/learn/psi-oracle-<host>-<date>.{md,json}``: per variant Ψ's held-out validation
(change correlation, mouth/eye PSNR) beside no-motion, copy-source and Ψ3d(source).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.learn_common import OUT_DIR, StageClock  # noqa: E402
from models.genhead.params import EXPRESSION_NAMES, GAZE_NAMES  # noqa: E402
from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.data.video_sidecars import read_sidecar  # noqa: E402
from pipeline_tasks.train_motion_encoder import r2_scores  # noqa: E402
from storage_schemas import pseudo_mv as pm  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402

LABEL_NAMES = EXPRESSION_NAMES + GAZE_NAMES  # the columns of oracle_labels


CURVE = ("change_correlation", "mouth_psnr", "no_motion_mouth_psnr", "psnr", "no_motion_psnr")


def oracle_labels(attrs: dict) -> np.ndarray:
    """``[T_stored, 11]``: expression (9) and gaze (2) of each stored frame, from the video's sidecar."""
    side = read_sidecar(Path(attrs["sidecar"]))
    idx = np.asarray(attrs["frame_indices"])
    return np.concatenate(
        [np.asarray(side["expression"], np.float32)[idx], np.asarray(side["gaze"], np.float32)[idx]], 1
    )


def write_oracle_store(src_store: Path, dst_store: Path, motion_dim: int) -> dict:
    """Copy ``src_store`` to ``dst_store`` with ``frame_motion``/``view_motion`` replaced by the labels.
    A pseudo view of frame t is Ψ3d's render of frame t, so it carries frame t's labels."""
    if dst_store.exists():
        shutil.rmtree(dst_store)
    shutil.copytree(src_store, dst_store)
    root = pm.open_read(dst_store)
    ids = [e["video_id"] for e in pm.read_index(dst_store) if e.get("status") == "converted"]
    labels = {v: oracle_labels(dict(root[v].attrs)) for v in ids}
    allv = np.concatenate(list(labels.values()))
    mu, sd = allv.mean(0), allv.std(0) + 1e-6
    import zarr

    rw = zarr.open_group(str(dst_store), mode="r+")
    for v in ids:
        z = (labels[v] - mu) / sd
        emb = np.zeros((len(z), motion_dim), np.float32)
        emb[:, : z.shape[1]] = z
        k = rw[v]["view_motion"].shape[1]
        rw[v]["frame_motion"][:] = emb
        rw[v]["view_motion"][:] = np.repeat(emb[:, None], k, 1)
    return {"videos": len(ids), "label_std": sd.round(3).tolist()}


def _ridge_r2(xtr, ytr, xte, yte, lam: float) -> list[float | None]:
    """R² per label on (xte, yte) of stage 2b's ridge probe fitted on (xtr, ytr)."""
    import torch

    from pipeline_tasks.train_motion_encoder import _ridge_probe

    pred = _ridge_probe(
        torch.from_numpy(xtr).float(), torch.from_numpy(ytr).float(), torch.from_numpy(xte).float(), lam
    )
    return [
        None if x is None else round(x, 3) for x in r2_scores(pred.numpy(), yte)
    ]  # None: constant in the held-out videos


def store_motion_probe(store: Path, n_val: int, encoder=None, lam: float = 1e-2) -> dict[str, list[float | None]]:
    """What E_mot's embeddings say about the true labels: R² per label of a ridge fit (training videos →
    the last ``n_val`` videos) from the embedding of the real frame (``frame_motion``) and from that of the
    Ψ3d-rendered pseudo views of the same frame (``view_motion``, what drives Ψ 90% of the time). A gap
    between the two is E_mot failing on Ψ3d's renders. ``encoder``: re-embed the store's frames and views
    with this E_mot instead of reading the embeddings stage 3 stored."""
    import torch

    from pipeline_tasks.data.images import to_model_images

    root = pm.open_read(store)
    ids = [e["video_id"] for e in pm.read_index(store) if e.get("status") == "converted"]
    emb = {"frame_motion": [], "view_motion": []}
    labels = []

    def embed(u8: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([encoder.encode(to_model_images(u8[i : i + 64])) for i in range(0, len(u8), 64)]).numpy()

    for v in ids:
        labels.append(oracle_labels(dict(root[v].attrs)))
        g = root[v]
        if encoder is None:
            f, vm = g["frame_motion"][:], g["view_motion"][:]
        else:
            views = g["views"][:]
            f = embed(g["frames"][:])
            vm = embed(views.reshape(-1, *views.shape[2:])).reshape(*views.shape[:2], -1)
        emb["frame_motion"].append(f)
        emb["view_motion"].append(vm.reshape(-1, vm.shape[-1]))
        k = vm.shape[1]
    split = len(ids) - n_val
    out = {}
    for name, xs in emb.items():
        ys = [np.repeat(y, 1 if name == "frame_motion" else k, 0) for y in labels]
        out[name] = _ridge_r2(
            np.concatenate(xs[:split]),
            np.concatenate(ys[:split]),
            np.concatenate(xs[split:]),
            np.concatenate(ys[split:]),
            lam,
        )
    return out


def probe_table(probes: dict[str, dict[str, list]]) -> list[str]:
    lines = ["| E_mot | embedding of | " + " | ".join(LABEL_NAMES) + " |", "|---" * (len(LABEL_NAMES) + 2) + "|"]
    for who, probe in probes.items():
        lines += [
            f"| {who} | {k} | " + " | ".join("–" if x is None else f"{x:.2f}" for x in v) + " |"
            for k, v in probe.items()
        ]
    return lines


def change_correlation_ceiling(pmv, cfg, sigmas=(0.0, 0.5, 1.0, 1.5, 2.0)) -> dict[str, float]:
    """What a *right but soft* change scores: on Ψ's held-out validation pairs, the change correlation of the
    truth blurred by σ px (the truth with the driving expression minus the truth with the source's, both
    blurred) against the sharp truth. σ = 0 scores 1; a model whose renders are that soft cannot score more."""
    from pipeline_tasks.data.pseudo_mv_videos import PseudoMVVideos, split_videos
    from pipeline_tasks.eval.metrics import change_correlation
    from pipeline_tasks.train_psi import held_out_pairs, validation_plan

    store = pmv.path / "store.zarr"
    _, val_ids = split_videos(pm.read_index(store), cfg.psi.val_videos)
    val = PseudoMVVideos(store, val_ids)
    pairs = held_out_pairs(val, validation_plan(val), cfg.genhead.sharpness)
    if pairs.truth_source_expression is None:
        raise SystemExit(f"no ceiling: {pairs.note}")
    out = {}
    for sigma in sigmas:
        blur = (lambda x: x) if sigma == 0 else (lambda x, s=sigma: _fixed_blur(x, s))
        c = change_correlation(
            blur(pairs.target), blur(pairs.truth_source_expression), pairs.target, pairs.truth_source_expression
        )
        out[f"sigma_{sigma:g}px"] = round(float(c.mean()), 3)
    return out


def _fixed_blur(x, sigma: float):
    """Gaussian blur of exactly σ px (separable, replicate border)."""
    import math

    import torch
    import torch.nn.functional as F

    r = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", default="psi.steps=400")
    ap.add_argument("--variants", default="oracle,emot")
    ap.add_argument("--out", default=str(OUT_DIR))
    ap.add_argument(
        "--probe",
        default="",
        help="comma-separated motion_encoder refs: only probe what each one's embeddings "
        "of the store's frames and pseudo views say about the labels (no Ψ training)",
    )
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="only the change correlation a right but blurred change scores on the held-out pairs (no training)",
    )
    ap.add_argument("--tag", default="", help="suffix of the report's file name (to keep several runs of a day)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipeline_tasks.train_psi import train_psi

    cfg = load_config(args.preset, [s for s in args.set.split() if s])
    reg = ArtifactRegistry()
    from pipeline_tasks.pseudo_mv import convert
    from pipeline_tasks.synthetic_videos import run_videos_stage

    p3, me = reg.resolve("psi3d@latest"), reg.resolve("motion_encoder@latest")
    clock = StageClock()
    videos = clock.run(
        "videos", run_videos_stage, cfg, reg
    )  # the preset's videos with --set applied (reused when built)
    pmv = clock.run("pseudo_mv", convert, cfg, p3, me, videos, registry=reg)
    scratch = ArtifactRegistry(reg.root.parent / f"{reg.root.name}-oracle-bench")  # beside, not inside, the registry
    if args.ceiling:
        print(f"change-correlation ceiling of a blurred truth, store {pmv.ref}: {change_correlation_ceiling(pmv, cfg)}")
        return 0
    if args.probe:
        from pipeline_tasks.train_motion_encoder import load_motion_encoder_artifact

        probes = {
            ref: store_motion_probe(
                pmv.path / "store.zarr", cfg.psi.val_videos, load_motion_encoder_artifact(ref, registry=reg)
            )
            for ref in args.probe.split(",")
        }
        print(f"store {pmv.ref} ({args.preset}, `{args.set}`)")
        print("\n".join(probe_table(probes)))
        return 0
    probe = store_motion_probe(pmv.path / "store.zarr", cfg.psi.val_videos)
    print(f"ridge R² of the true labels from the store's motion (held-out videos): {probe}")
    results: dict[str, dict] = {}
    curves: dict[str, list[dict]] = {}
    for variant in [v for v in args.variants.split(",") if v]:
        vreg = ArtifactRegistry(scratch.root / variant)
        for art in (p3, me) + ((pmv,) if variant != "oracle" else ()):  # the inputs, linked into the variant's registry
            link = vreg.root / art.kind / art.version
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(art.path, target_is_directory=True)
        if variant == "oracle":
            dst = vreg.root / "pseudo_mv" / pmv.version
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(pmv.path, dst)
            info = write_oracle_store(pmv.path / "store.zarr", dst / "store.zarr", cfg.model.psi.motion_dim)
            src = vreg.resolve(f"pseudo_mv@{pmv.version}")
            print(f"oracle store: {info}")
        elif variant == "emot":
            src = vreg.resolve(pmv.ref)
        else:
            raise SystemExit(f"unknown variant {variant!r} (oracle, emot)")
        art = clock.run(variant, train_psi, cfg, src, vreg.resolve(p3.ref), vreg.resolve(me.ref), registry=vreg)
        results[variant] = {k: v for k, v in art.manifest["metrics"].items() if isinstance(v, (int, float))}
        curves[variant] = [
            {k: r[k] for k in ("step", *(f"val_{c}" for c in CURVE)) if k in r}
            for r in map(json.loads, (art.path / "logs" / "scalars.jsonl").read_text().splitlines())
            if "val_change_correlation" in r
        ]
    host, date = socket.gethostname(), time.strftime("%Y-%m-%d")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"psi-oracle-{host}-{date}{'-' + args.tag if args.tag else ''}"
    payload = {
        "preset": args.preset,
        "set": args.set,
        "host": host,
        "date": date,
        "seconds": clock.seconds,
        "results": results,
        "store_motion_probe_r2": probe,
        "curves": curves,
        "label_names": LABEL_NAMES,
    }
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    keys = [
        "psnr",
        "no_motion_psnr",
        "mouth_psnr",
        "no_motion_mouth_psnr",
        "eyes_psnr",
        "no_motion_eyes_psnr",
        "change_correlation",
    ]
    lines = [
        f"# Ψ with oracle motion vs E_mot motion ({args.preset}, `{args.set}`, {host}, {date})",
        "",
        "| variant | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for v, r in results.items():
        lines.append(f"| {v} | " + " | ".join(f"{r.get('val_' + k, float('nan')):.3f}" for k in keys) + " |")
    base = next(iter(results.values()), {})
    lines += [
        "",
        "Baselines on the same pairs: "
        + ", ".join(f"{k} {v:.3f}" for k, v in base.items() if k.startswith("baseline_")),
    ]
    lines += [
        "",
        "Held-out validation during training (EMA weights): change correlation, mouth PSNR − no-motion mouth PSNR:",
        "",
        "| variant | " + " | ".join(f"step {r['step']}" for r in next(iter(curves.values()), [])) + " |",
        "|---" * (1 + len(next(iter(curves.values()), []))) + "|",
    ]
    for v, rows in curves.items():
        lines.append(
            f"| {v} | "
            + " | ".join(
                f"{r['val_change_correlation']:.3f} / {r['val_mouth_psnr'] - r['val_no_motion_mouth_psnr']:+.2f} dB"
                for r in rows
            )
            + " |"
        )
    lines += [
        "",
        "Ridge R² of the true labels from the store's E_mot embeddings (training videos → held-out videos):",
        "",
    ]
    lines += probe_table({me.ref: probe})
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
