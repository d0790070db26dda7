"""The stages by artifact kind: where each :class:`~pipeline_tasks.stage.StageSpec` lives, and the three
things a stage may do with another stage's artifact: check it (:func:`resolve`), load it (:func:`load`),
or build it (:func:`spec`).

Stage modules never import each other (tests/test_import_graph.py): they name a parent by its
kind, and this registry imports the parent's module by name when asked. So a parent's code does not enter a
child's code hash; it reaches the child's version through the parent's own version (the parent refs).
"""

from __future__ import annotations

import importlib
from typing import Any

from pipeline_tasks.stage import StageSpec
from storage_schemas.artifacts import Artifact, ArtifactError, ArtifactRegistry

# kind → (module, attribute). The order is the pipeline's.
STAGES: dict[str, tuple[str, str]] = {
    "genhead_samples": ("pipeline_tasks.genhead_samples", "SPEC"),
    "analyser_samples": ("pipeline_tasks.analyser_samples", "SPEC"),
    "psi3d": ("pipeline_tasks.train_psi3d", "SPEC"),
    "motion_encoder": ("pipeline_tasks.train_motion_encoder", "SPEC"),
    "synthetic_videos": ("pipeline_tasks.synthetic_videos", "SPEC"),
    "pseudo_mv": ("pipeline_tasks.pseudo_mv", "SPEC"),
    "psi": ("pipeline_tasks.train_psi", "SPEC"),
    "eval_analyser": ("pipeline_tasks.evaluate", "ANALYSER_SPEC"),
    "eval": ("pipeline_tasks.evaluate", "SPEC"),
    "ablation": ("pipeline_tasks.ablation", "SPEC"),
}
STAGE_MODULES = sorted({module for module, _ in STAGES.values()})


def spec(kind: str) -> StageSpec:
    """The declaration of the stage that publishes ``kind``."""
    if kind not in STAGES:
        raise KeyError(f"no stage publishes artifacts of kind {kind!r}; known kinds: {', '.join(STAGES)}")
    module, attr = STAGES[kind]
    declared = getattr(importlib.import_module(module), attr)
    if declared.kind != kind:
        raise RuntimeError(f"{module}.{attr} declares kind {declared.kind!r}, registered as {kind!r}")
    return declared


def specs() -> list[StageSpec]:
    return [spec(k) for k in STAGES]


def resolve(
    registry: ArtifactRegistry, ref: Artifact | str, kind: str | tuple[str, ...], preset: str | None = None
) -> Artifact:
    """``ref`` as a complete artifact of ``kind`` (or of one of several kinds) whose schema version is the one
    its stage writes today; ``kind@latest`` is the newest one made with ``preset`` (when given)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    art = registry.resolve(ref, preset=preset)
    if art.kind not in kinds:
        raise ArtifactError(f"expected a {' or '.join(repr(k) for k in kinds)} artifact, got {art.ref} ({art.path})")
    return registry.resolve(art, schema_version=spec(art.kind).schema_version)


def load(art: Artifact, **kwargs: Any) -> Any:
    """What a later stage uses of ``art`` (a network, a reader), by its kind's ``load``."""
    declared = spec(art.kind)
    if declared.load is None:
        raise TypeError(f"stage {art.kind!r} declares nothing to load from its artifacts ({art.ref})")
    return declared.load(art, **kwargs)
