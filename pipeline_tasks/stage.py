"""Run a stage at most once per version: skip it when complete, resume it when interrupted.

Every stage follows the same rule (DESIGN.md §4): its version hashes its config section(s),
its parents, its schema version and the code it runs; a complete version is reused, a leftover temporary folder
is resumed, and the payload is published atomically.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter
from storage_schemas.code_hash import PROJECT_PACKAGES, stage_code_hash

log = logging.getLogger("portrait4d")


def run_once(
    registry: ArtifactRegistry,
    kind: str,
    config: dict[str, Any],
    parents: Iterable[Artifact],
    schema_version: int,
    build: Callable[[ArtifactWriter], None],
    code_module: str | None = None,
) -> Artifact:
    """Return the complete ``kind`` artifact for these inputs, building it if needed.

    The version includes the hash of the code the stage runs: ``code_module`` (default: the module
    ``build`` is defined in, i.e. the stage's own) and every project module it imports."""
    parents = list(parents)
    code_module = code_module or getattr(build, "__module__", None)
    if not code_module or code_module.split(".")[0] not in PROJECT_PACKAGES:
        raise ValueError(
            f"run_once({kind!r}): build is defined in {code_module!r}, not a project stage module; "
            "pass code_module='pipeline_tasks.<stage>' (its code goes into the version)"
        )
    code = stage_code_hash(code_module)
    version = registry.version_for(kind, config, parents, schema_version, code)
    existing = registry.find(kind, version)
    if existing is not None:
        log.info("%s@%s is complete: skipping the stage", kind, version)
        return existing
    abandoned = [t for t in registry.temporaries(kind) if not t.in_use and t.version != version]
    if abandoned:
        log.warning(
            "%d abandoned temporary folder(s) of %s from other versions (%.1f MiB): `make inspect ARGS=--stale` "
            "lists them, `make clean-stale` removes them",
            len(abandoned),
            kind,
            sum(t.bytes for t in abandoned) / 2**20,
        )
    t0 = time.time()
    with registry.writer(kind, config, parents, schema_version, version=version, code_hash=code) as w:
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
