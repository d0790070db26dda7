"""Run a stage at most once per version: skip it when complete, resume it when interrupted.

Every stage follows the same rule (DESIGN.md §4): its version hashes its config section(s),
its parents and its schema version; a complete version is reused, a leftover temporary folder
is resumed, and the payload is published atomically.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

log = logging.getLogger("portrait4d")


def run_once(
    registry: ArtifactRegistry,
    kind: str,
    config: dict[str, Any],
    parents: Iterable[Artifact],
    schema_version: int,
    build: Callable[[ArtifactWriter], None],
) -> Artifact:
    """Return the complete ``kind`` artifact for these inputs, building it if needed."""
    parents = list(parents)
    version = registry.version_for(kind, config, parents, schema_version)
    existing = registry.find(kind, version)
    if existing is not None:
        log.info("%s@%s is complete: skipping the stage", kind, version)
        return existing
    t0 = time.time()
    with registry.writer(kind, config, parents, schema_version, version=version) as w:
        if w.resumed:
            log.info("%s@%s: resuming from %s", kind, version, w.path)
        build(w)
        w.extra.setdefault("stage_seconds", round(time.time() - t0, 2))
        return w.commit()


def stage_task(fn: Callable, name: str):
    """``fn`` as a Prefect task; caching off, because versions and resumption are the registry's job."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name=name, log_prints=True, cache_policy=NO_CACHE)(fn)
