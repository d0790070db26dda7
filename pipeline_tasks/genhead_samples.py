"""Stage 1: render the ``genhead_samples`` artifact (multi-view images of synthetic heads).

Identity i of the stage is ``identity_ids(genhead.seed, n_identities)[i]``; each identity draws
its shape, z, expression (neutral / one strong / mixture), pose, gaze and V cameras from its own
generator seeded with its id, so a sample does not depend on batching or on resuming. Shards of
``shard_size`` identities are rendered and appended whole; a killed run resumes at the first
missing shard (``gs.num_samples``).

Artifact version config (what the version hashes): ``cfg.stage_config("genhead")`` (preset +
the genhead section) plus ``resolution`` and the generator's own ``config()``.
Payload: ``store.zarr`` (schema ``genhead_samples``) and ``previews/contact_sheet.png``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models import cameras as cam
from models.genhead import params as P
from models.genhead.ground_truth import identity_ids
from models.genhead.procedural import ProceduralGenHead
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.genhead_render import make_generator, render_samples, stage_resolution
from pipeline_tasks.data.previews import grid
from pipeline_tasks.stage import StageSpec, run_once
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

log = logging.getLogger("portrait4d")
KIND = "genhead_samples"
STORE = "store.zarr"
CONTACT_SHEET = "previews/contact_sheet.png"


def artifact_config(cfg: PipelineConfig) -> dict[str, Any]:
    """What the stage's version hashes (see module docstring)."""
    return {
        **cfg.stage_config("genhead"),
        "resolution": stage_resolution(cfg),
        "generator": make_generator(cfg).config(),
    }


def sample_identity(identity: int, views: int, p_neutral: float, p_single: float) -> dict[str, torch.Tensor]:
    """One identity's parameters (``[1, ·]``) and cameras (``[1, V, 25]``) from its own seed."""
    g = torch.Generator().manual_seed(int(identity))
    p = P.sample_params(1, g, p_neutral=p_neutral, p_single=p_single)
    labels, _ = cam.sample_cameras(views, g)
    return {**p, "cameras": labels[None]}


def render_block(
    gen: ProceduralGenHead, ids: list[int], views: int, resolution: int, p_neutral: float, p_single: float, batch: int
) -> dict[str, np.ndarray]:
    """Render identities ``ids`` (one sample each, from its own seed) into a schema block."""
    samples = [sample_identity(i, views, p_neutral, p_single) for i in ids]
    return render_samples(gen, samples, ids, resolution, batch)


def write_samples(cfg: PipelineConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Render (or finish rendering) the store under ``out_dir``; returns counts and throughput."""
    g = cfg.genhead
    res = stage_resolution(cfg)
    gen = make_generator(cfg)
    store = out_dir / STORE
    names = P.parameter_names()
    if not (store / "zarr.json").exists():
        gs.create(
            store,
            g.views_per_identity,
            res,
            len(P.SHAPE_NAMES),
            len(P.EXPRESSION_NAMES),
            3,
            2,
            P.Z_DIM,
            shard_identities=g.shard_size,
            attrs={
                "generator_backend": gen.backend,
                "generator_config": gen.config(),
                "parameter_names": names,
                "identity_seed": g.seed,
                "camera_convention": "models.cameras 25-vector, head-relative (DESIGN.md §2, §6)",
            },
        )
    done = gs.num_samples(store)
    ids = identity_ids(g.seed, g.n_identities)
    t0, rendered = time.time(), 0
    bar = tqdm(total=len(ids), initial=done, desc="genhead identities", unit="id", disable=not progress)
    for start in range(done, len(ids), g.shard_size):
        shard = ids[start : start + g.shard_size]
        block = render_block(gen, shard, g.views_per_identity, res, g.p_neutral, g.p_single, g.render_batch)
        gs.append(store, block)
        rendered += len(shard) * g.views_per_identity
        bar.update(len(shard))
        bar.set_postfix(img_per_s=f"{rendered / max(time.time() - t0, 1e-9):.1f}")
    bar.close()
    gs.finalize(store)
    gs.validate(store)
    seconds = time.time() - t0
    return {
        "identities": len(ids),
        "views": g.views_per_identity,
        "images": len(ids) * g.views_per_identity,
        "resumed_from": done,
        "rendered_images": rendered,
        "render_seconds": round(seconds, 2),
        "images_per_s": round(rendered / seconds, 2) if rendered and seconds > 0 else None,
        "resolution": res,
    }


def write_contact_sheet(store: Path, path: Path, n_identities: int = 16) -> Path:
    """PNG of the first identities (rows) × their views (columns) as stored."""
    grp = gs.open_read(store)
    n = min(n_identities, grp["images"].shape[0])
    imgs = np.asarray(grp["images"][:n])
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(imgs, pad=1).save(path)
    return path


def run_genhead_stage(cfg: PipelineConfig, registry: ArtifactRegistry | None = None, progress: bool = True) -> Artifact:
    """Stage 1 without Prefect: the complete ``genhead_samples`` artifact for ``cfg`` (built if needed)."""
    registry = registry or ArtifactRegistry()

    def build(w: ArtifactWriter) -> None:
        stats = write_samples(cfg, w.path, progress=progress)
        write_contact_sheet(w.path / STORE, w.path / CONTACT_SHEET, cfg.genhead.preview_identities)
        w.counts.update({"identities": stats["identities"], "views": stats["views"], "images": stats["images"]})
        w.metrics.update({"images_per_s": stats["images_per_s"], "render_seconds": stats["render_seconds"]})
        w.extra.update(
            {
                "resolution": stats["resolution"],
                "resumed_from_identity": stats["resumed_from"],
                "contact_sheet": CONTACT_SHEET,
                "generator": make_generator(cfg).config(),
            }
        )

    return run_once(registry, KIND, artifact_config(cfg), [], gs.SCHEMA_VERSION, build)


def summary_markdown(art: Artifact) -> str:
    m = art.manifest
    c, met = m.get("counts", {}), m.get("metrics", {})
    return (
        f"## genhead_samples `{art.ref}`\n\n"
        f"| identities | views | images | resolution | images/s | render s |\n|---|---|---|---|---|---|\n"
        f"| {c.get('identities')} | {c.get('views')} | {c.get('images')} | {m.get('extra', {}).get('resolution')} "
        f"| {met.get('images_per_s')} | {met.get('render_seconds')} |\n\n"
        f"Store: `{Path(art.path) / STORE}`  \nContact sheet: `{Path(art.path) / CONTACT_SHEET}`\n"
    )


SPEC = StageSpec(
    kind=KIND,
    schema_version=gs.SCHEMA_VERSION,
    sections=("genhead",),
    parents=(),
    build=run_genhead_stage,
    config=artifact_config,
    summary=summary_markdown,
)
genhead_samples_task = SPEC.task()
