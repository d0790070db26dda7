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
(:func:`expression_visibility`): each coefficient at strength 1 (and 0.5) against neutral, on
``visibility_identities`` identities at random cameras; a coefficient is *visible* when it changes
at least ``VISIBLE_MIN_PIXELS`` pixels by more than ``VISIBLE_DELTA`` (of the [0, 1] range).

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
from models.genhead.ground_truth import GroundTruth, identity_from_seed, identity_ids
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
VISIBLE_MIN_PIXELS = 8.0  # a coefficient is visible when strength 1 changes at least this many pixels


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


@torch.no_grad()
def expression_visibility(
    resolution: int, n_identities: int = 16, seed: int = 3, gt: GroundTruth | None = None
) -> dict[str, Any]:
    """Per expression coefficient: how many pixels it changes (by > ``VISIBLE_DELTA``) at strength
    1 and 0.5 against neutral, and the PSNR between them, averaged over identities at random
    cameras (head pose 0, gaze 0); ``visible`` when strength 1 changes ≥ ``VISIBLE_MIN_PIXELS``."""
    gt = gt or GroundTruth()
    ids = identity_ids(seed, n_identities)
    cams, _ = cam.sample_cameras(len(ids), torch.Generator().manual_seed(int(seed) + 17))
    neutral = gt.render(ids, cams, resolution).rgb
    out: dict[str, Any] = {
        "resolution": resolution,
        "identities": len(ids),
        "delta": VISIBLE_DELTA,
        "min_pixels": VISIBLE_MIN_PIXELS,
        "per_expression": {},
    }
    for k, name in enumerate(P.EXPRESSION_NAMES):
        row: dict[str, float] = {}
        for strength, key in ((1.0, "full"), (0.5, "half")):
            e = torch.zeros(len(ids), len(P.EXPRESSION_NAMES))
            e[:, k] = strength
            img = gt.render(ids, cams, resolution, expression=e).rgb
            diff = (img - neutral).abs() / 2  # [B,3,H,W] in [0, 1]
            row[f"pixels_changed_{key}"] = float((diff.amax(1) > VISIBLE_DELTA).float().sum((1, 2)).mean())
            mse = (diff**2).mean((1, 2, 3)).clamp_min(1e-10)
            row[f"psnr_vs_neutral_{key}"] = float((10 * torch.log10(1 / mse)).mean())
        row["visible"] = row["pixels_changed_full"] >= VISIBLE_MIN_PIXELS
        out["per_expression"][name] = row
    out["visible"] = [n for n, r in out["per_expression"].items() if r["visible"]]
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
        vis = expression_visibility(stats["resolution"], a.visibility_identities, a.seed)
        (w.path / VISIBILITY).write_text(json.dumps(vis, indent=2))
        write_contact_sheet(w.path / STORE, w.path / CONTACT_SHEET, a.expressions_per_identity)
        w.counts.update({k: stats[k] for k in ("identities", "samples", "views", "images")})
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
