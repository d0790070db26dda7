"""Stage 1b: the ``analyser_samples`` artifact — the synthetic heads E_mot and the evaluation
analyser learn expression from.

Stage 1 gives every identity one expression, so a CNN trained on it can read "expression" off who
the person is (measured: held-out R² < 0 for every coefficient). Here each identity ``i`` of
``identity_ids(analyser_samples.seed, n_identities)`` appears in ``expressions_per_identity``
samples; sample ``j`` draws its expression, gaze, head pose and ``views`` cameras from its own
generator (seeded by ``(i, j)``), independently of everything else, while shape α and appearance
z are the identity's. So expression, gaze, identity and pose vary independently, and a sample
does not depend on batching or on resuming.

The store has the ``genhead_samples`` schema (one row per sample; ``identity`` repeats across an
identity's rows; cameras head-relative), so every reader of stage 1 reads it too.

Which expressions can be seen at all at the preset's resolution is measured here, not assumed
(:func:`expression_visibility`), on the store's own first ``visibility_samples`` samples, at the
strengths they were drawn with: each is rendered as drawn and once with each coefficient set to 0;
the coefficient is *seen* in that sample when this changes at least ``SEEN_MIN_PIXELS`` pixels by
more than ``VISIBLE_DELTA`` (of the [0, 1] range). A reader that knew every seen coefficient exactly
and nothing of an unseen one would reach R² = 1 − SS(unseen)/SS(total): the coefficient's *ceiling*
from one image at this resolution. It is *visible* when that ceiling is at least
``VISIBLE_MIN_CEILING`` (issue 11's E_mot target, so no coefficient is asked for more than one
image can show). Beside it, as a description, the pixels each coefficient changes at strength 1
against the same face made neutral (the measurement of before, which called mouth wide visible
at 64² while the store's samples move a median 5 pixels: bench/learn/emot-ceiling-vm-2026-12-06.md).

Payload: ``store.zarr``, ``visibility.json``, ``previews/contact_sheet.png`` (identities × their
expression samples, first view).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models import cameras as cam
from models.genhead import params as P
from models.genhead.ground_truth import identity_from_seed, identity_ids
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.genhead_render import make_generator, render_samples, stage_resolution
from pipeline_tasks.data.previews import grid
from pipeline_tasks.stage import StageSpec, run_once
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "analyser_samples"
SCHEMA_VERSION = gs.SCHEMA_VERSION
STORE = "store.zarr"
VISIBILITY = "visibility.json"
CONTACT_SHEET = "previews/contact_sheet.png"
ROW_SEED_STRIDE = 1000  # sample j of identity i draws from seed i·1000 + j + 1 (j < 1000)
VISIBLE_DELTA = 0.1  # a pixel "changes" when some channel moves by more than this (of [0, 1])
# a coefficient is seen in a sample when zeroing it changes at least this many pixels: at 8 px E_mot beat the
# ceiling it implies (blink right 0.86 vs 0.72, mouth wide 0.69 vs 0.60), at 4 px no reader measured so far has
SEEN_MIN_PIXELS = 4.0
VISIBLE_MIN_CEILING = 0.8  # visible: one image at this resolution can tell the coefficient to R² ≥ this
DESCRIBED_SAMPLES = 16  # samples whose strength-1-against-neutral pixel counts describe each coefficient


def artifact_config(cfg: PipelineConfig) -> dict[str, Any]:
    """What the stage's version hashes: the section, the resolution and the generator."""
    return {
        **cfg.stage_config("analyser_samples"),
        "resolution": stage_resolution(cfg),
        "generator": make_generator(cfg).config(),
        "sharpness": cfg.genhead.sharpness,
    }


def check_seeds(cfg: PipelineConfig) -> None:
    """The analyser's identities must not be anyone's the pipeline trains Ψ on or evaluates."""
    a = cfg.analyser_samples
    taken = {
        "genhead.seed": cfg.genhead.seed,
        "videos.seed": cfg.videos.seed,
        "eval.seed": cfg.eval.seed,
        "eval.seed + 1 (pose probe)": cfg.eval.seed + 1,
    }
    clash = [k for k, v in taken.items() if v == a.seed]
    if clash:
        raise ValueError(
            f"analyser_samples.seed={a.seed} equals {', '.join(clash)}: the analyser's identities must be disjoint"
        )
    if a.expressions_per_identity < 1 or a.expressions_per_identity >= ROW_SEED_STRIDE:
        raise ValueError(
            f"analyser_samples.expressions_per_identity must be in [1, {ROW_SEED_STRIDE}), "
            f"got {a.expressions_per_identity}"
        )
    if a.views < 1:
        raise ValueError(f"analyser_samples.views must be ≥ 1, got {a.views}")


def sample_row(identity: int, j: int, views: int, p_neutral: float, p_single: float) -> dict[str, torch.Tensor]:
    """Sample ``j`` of ``identity``: its shape/z, with an expression, pose, gaze and cameras of its
    own (``[1, ·]``; cameras ``[1, V, 25]``, world) drawn from the seed ``identity·1000 + j + 1``."""
    ident = identity_from_seed(identity)
    g = torch.Generator().manual_seed(int(identity) * ROW_SEED_STRIDE + j + 1)
    expression = P.sample_expression(1, g, p_neutral, p_single)
    pose = P.sample_pose(1, g)
    gaze = P.sample_gaze(1, g)
    cams, _ = cam.sample_cameras(views, g)
    return {
        "shape": ident.shape[None],
        "expression": expression,
        "pose": pose,
        "gaze": gaze,
        "z": ident.z[None],
        "cameras": cams[None],
    }


def _first_rows(cfg: PipelineConfig, n: int) -> list[tuple[int, int]]:
    """The store's first ``n`` (identity, sample) rows, in the order the store holds them."""
    a = cfg.analyser_samples
    ids = identity_ids(a.seed, -(-n // a.expressions_per_identity))
    return [(i, j) for i in ids for j in range(a.expressions_per_identity)][:n]


def held_out_rows(cfg: PipelineConfig, identities: int) -> list[tuple[int, int]]:
    """The (identity, sample) rows of the store's last ``identities`` identities: E_mot's held-out samples
    (``LabelledViews.split``), in store order."""
    a = cfg.analyser_samples
    ids = identity_ids(a.seed, a.n_identities)[-max(1, min(int(identities), a.n_identities - 1)) :]
    return [(i, j) for i in ids for j in range(a.expressions_per_identity)]


def r2_ceiling(values: np.ndarray, seen: np.ndarray) -> float | None:
    """R² of a reader that knows ``values`` exactly where ``seen`` and nothing (their mean) elsewhere:
    1 − SS(unseen)/SS(total); None where the values never vary."""
    y = np.asarray(values, dtype=np.float64)
    ss_total = float(((y - y.mean()) ** 2).sum())
    if ss_total <= 1e-12:
        return None
    unseen = y[~np.asarray(seen, dtype=bool)]
    return 1.0 - (float(((unseen - unseen.mean()) ** 2).sum()) if len(unseen) else 0.0) / ss_total


@torch.no_grad()
def pixels_changed_per_sample(
    cfg: PipelineConfig,
    n: int,
    described: int = 0,
    progress: bool = False,
    rows: list[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The store's first ``n`` samples (or its ``rows``, (identity, sample) pairs, e.g. :func:`held_out_rows`) at
    the stage's resolution: their expressions ``[n, E]``, the pixels (> ``VISIBLE_DELTA``) each changes when
    coefficient k is set to 0 ``[n, E]``, and, on the first ``described`` of them, the pixels coefficient k alone
    at strength 1 changes against neutral ``[E]`` (mean)."""
    a = cfg.analyser_samples
    res, gen = stage_resolution(cfg), make_generator(cfg)
    pairs = _first_rows(cfg, n) if rows is None else list(rows)
    n = len(pairs)
    rows = [sample_row(i, j, 1, a.p_neutral, a.p_single) for i, j in pairs]
    cat = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
    cat["cameras"] = cat["cameras"][:, 0]
    expr, e_dim, m = cat["expression"], cat["expression"].shape[1], min(described, n)
    bar = tqdm(total=(e_dim + 1) * (n + m), desc="expression visibility", unit="render", disable=not progress)

    def render(e: torch.Tensor, upto: int) -> torch.Tensor:
        out = []
        for s in range(0, upto, a.render_batch):
            sl = slice(s, min(s + a.render_batch, upto))
            c = {k: cat[k][sl] for k in ("shape", "pose", "gaze", "z", "cameras")}
            out.append(gen.render(c["shape"], e[sl], c["pose"], c["gaze"], c["z"], c["cameras"], res).rgb)
            bar.update(sl.stop - sl.start)
        return torch.cat(out) if out else torch.zeros(0)

    def changed(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return (((x - y).abs() / 2).amax(1) > VISIBLE_DELTA).float().sum((1, 2)).numpy()

    drawn = render(expr, n)
    neutral = render(torch.zeros_like(expr), m)
    px, full_px = np.zeros((n, e_dim)), np.zeros(e_dim)
    for k in range(e_dim):
        without = expr.clone()
        without[:, k] = 0
        px[:, k] = changed(render(without, n), drawn)
        if m:
            alone = torch.zeros_like(expr)
            alone[:, k] = 1.0
            full_px[k] = changed(render(alone, m), neutral).mean()
    bar.close()
    return expr.numpy().astype(np.float64), px, full_px


def expression_visibility(cfg: PipelineConfig, n_samples: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Per expression coefficient, on the store's first ``n_samples`` samples (default
    ``analyser_samples.visibility_samples``) at the stage's resolution: the share of the samples where
    it is active that do not show it, the R² ceiling that leaves, ``visible`` (ceiling ≥
    ``VISIBLE_MIN_CEILING``), and the pixels it changes at strength 1 against neutral (module docstring)."""
    n = int(n_samples if n_samples is not None else cfg.analyser_samples.visibility_samples)
    if n < 2:
        raise ValueError(f"analyser_samples.visibility_samples must be ≥ 2, got {n}")
    m = min(DESCRIBED_SAMPLES, n)
    expr, px, full_px = pixels_changed_per_sample(cfg, n, m, progress)
    out: dict[str, Any] = {
        "resolution": stage_resolution(cfg),
        "samples": n,
        "delta": VISIBLE_DELTA,
        "seen_min_pixels": SEEN_MIN_PIXELS,
        "visible_min_ceiling": VISIBLE_MIN_CEILING,
        "described_samples": m,
        "per_expression": {},
    }
    for k, name in enumerate(P.EXPRESSION_NAMES):
        y = expr[:, k]
        active, seen = y > 0, px[:, k] >= SEEN_MIN_PIXELS
        ceiling = r2_ceiling(y, seen)
        out["per_expression"][name] = {
            "active_samples": int(active.sum()),
            "median_pixels_changed_when_active": float(np.median(px[active, k])) if active.any() else 0.0,
            "unseen_share_of_active": float((active & ~seen).sum() / max(int(active.sum()), 1)),
            "r2_ceiling": ceiling,
            "pixels_changed_full": float(full_px[k]),
            "visible": ceiling is not None and ceiling >= VISIBLE_MIN_CEILING,
        }
    out["visible"] = [name for name, r in out["per_expression"].items() if r["visible"]]
    return out


def write_samples(cfg: PipelineConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Render (or finish rendering) the store under ``out_dir``; resumes at the first missing shard."""
    a = cfg.analyser_samples
    res = stage_resolution(cfg)
    gen = make_generator(cfg)
    store = out_dir / STORE
    if not (store / "zarr.json").exists():
        gs.create(
            store,
            a.views,
            res,
            len(P.SHAPE_NAMES),
            len(P.EXPRESSION_NAMES),
            3,
            2,
            P.Z_DIM,
            shard_identities=a.shard_size,
            attrs={
                "generator_backend": gen.backend,
                "generator_config": gen.config(),
                "parameter_names": P.parameter_names(),
                "identity_seed": a.seed,
                "expressions_per_identity": a.expressions_per_identity,
                "camera_convention": "models.cameras 25-vector, head-relative (DESIGN.md §2, §6)",
                "purpose": "analyser training: expression, gaze, pose and cameras drawn independently per sample",
            },
        )
    ids = identity_ids(a.seed, a.n_identities)
    rows = [(i, j) for i in ids for j in range(a.expressions_per_identity)]
    done = gs.num_samples(store)
    bar = tqdm(total=len(rows), initial=done, desc="analyser samples", unit="sample", disable=not progress)
    for start in range(done, len(rows), a.shard_size):
        chunk = rows[start : start + a.shard_size]
        samples = [sample_row(i, j, a.views, a.p_neutral, a.p_single) for i, j in chunk]
        gs.append(store, render_samples(gen, samples, [i for i, _ in chunk], res, a.render_batch))
        bar.update(len(chunk))
    bar.close()
    gs.finalize(store)
    gs.validate(store)
    return {
        "identities": len(ids),
        "samples": len(rows),
        "views": a.views,
        "images": len(rows) * a.views,
        "resolution": res,
    }


def write_contact_sheet(store: Path, path: Path, expressions_per_identity: int, n_identities: int = 12) -> Path:
    """PNG: identities (rows) × their expression samples (columns), first view of each."""
    grp = gs.open_read(store)
    e = expressions_per_identity
    n = min(n_identities, grp["images"].shape[0] // e)
    imgs = np.asarray(grp["images"][: n * e, 0]).reshape(n, e, *grp["images"].shape[2:])
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(imgs, pad=1).save(path)
    return path


def run_analyser_samples_stage(
    cfg: PipelineConfig, registry: ArtifactRegistry | None = None, progress: bool = True
) -> Artifact:
    """Stage 1b without Prefect: the complete ``analyser_samples`` artifact for ``cfg`` (built if needed)."""
    registry = registry or ArtifactRegistry()
    check_seeds(cfg)
    a = cfg.analyser_samples

    def build(w: ArtifactWriter) -> None:
        stats = write_samples(cfg, w.path, progress=progress)
        vis = expression_visibility(cfg, progress=progress)
        (w.path / VISIBILITY).write_text(json.dumps(vis, indent=2))
        write_contact_sheet(w.path / STORE, w.path / CONTACT_SHEET, a.expressions_per_identity)
        w.counts.update({k: stats[k] for k in ("identities", "samples", "views", "images")})
        w.metrics.update({f"r2_ceiling_{n}": r["r2_ceiling"] for n, r in vis["per_expression"].items()})
        w.metrics.update({f"pixels_changed_{n}": r["pixels_changed_full"] for n, r in vis["per_expression"].items()})
        w.extra.update(
            {
                "resolution": stats["resolution"],
                "visible_expressions": vis["visible"],
                "visibility": VISIBILITY,
                "contact_sheet": CONTACT_SHEET,
            }
        )

    return run_once(registry, KIND, artifact_config(cfg), [], SCHEMA_VERSION, build)


def visible_expressions(art: Artifact) -> list[str]:
    """The coefficients the artifact's visibility measurement found visible."""
    return list(json.loads((art.path / VISIBILITY).read_text())["visible"])


SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=("analyser_samples",),
    parents=(),
    build=run_analyser_samples_stage,
    config=artifact_config,
)
analyser_samples_task = SPEC.task()
