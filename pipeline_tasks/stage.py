"""The stage contract: a stage is declared once (:class:`StageSpec`) and run at most once per version.

Every stage follows the same rule (DESIGN.md §4): its version hashes its config section(s),
its parents, its schema version and the code it runs; a complete version is reused, a leftover temporary folder
is resumed, and the payload is published atomically (:func:`run_once`). Every stage is wrapped for Prefect
the same way (:meth:`StageSpec.task`). The stages are found by kind in :mod:`pipeline_tasks.stages`.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from storage_schemas.artifacts import Artifact, ArtifactCompleted, ArtifactError, ArtifactRegistry, ArtifactWriter
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
    try:
        with registry.writer(kind, config, parents, schema_version, version=version, code_hash=code) as w:
            if w.resumed:
                log.info("%s@%s: resuming from %s", kind, version, w.path)
            build(w)
            w.extra.setdefault("stage_seconds", round(time.time() - t0, 2))
            return w.commit()
    except ArtifactCompleted:  # another pipeline on this root built it while this one waited for the lock
        log.info("%s@%s was completed by another process: using it", kind, version)
        return registry.resolve(f"{kind}@{version}")


@dataclass(frozen=True)
class StageSpec:
    """One stage, declared in its module as ``SPEC``.

    * ``kind``: the artifact kind it publishes (``<root>/<kind>/<version>/``), also its name in the registry;
    * ``schema_version``: the layout of what it publishes; a reader of the artifact checks it;
    * ``sections``: the config sections its version hashes (with the preset);
    * ``parents``: the kinds of the artifacts it consumes, in the order ``build`` takes them;
    * ``build(cfg, *parents, registry=None, ...) → Artifact``: build, reuse or resume the artifact;
    * ``config(cfg) → dict``: what its version hashes from the preset (``build`` may add inputs that are not
      in the preset, e.g. the content hashes of user videos or the benchmark's digest);
    * ``load(artifact, **kw)``: the object a later stage uses (a network, a reader), or None;
    * ``train(cfg, *parents, writer, stop_after, **kw)``: the trainer's body writing into a writer (what a
      torchrun worker runs, and what the evaluation analyser reuses), or None for a stage that does not train;
    * ``summary(artifact) → str``: the markdown its flow publishes, or None.
    """

    kind: str
    schema_version: int
    sections: tuple[str, ...]
    parents: tuple[str, ...]
    build: Callable[..., Any]
    config: Callable[[Any], dict[str, Any]]
    load: Callable[..., Any] | None = None
    train: Callable[..., None] | None = None
    summary: Callable[..., str] | None = None

    @property
    def task_name(self) -> str:
        return self.kind.replace("_", "-")

    def task(self):
        """``build`` as a Prefect task named after the kind (one per spec; caching off, see :func:`stage_task`)."""
        return _task_of(self)


# A stage task that fails on a transient fault (out of memory, a lost device or connection, a full disk) is run
# again once after a pause; the rerun resumes (run_once adopts the temporary folder, a trainer its checkpoint).
STAGE_RETRIES = 1
STAGE_RETRY_DELAY_S = 30.0


def transient_failure(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry faults of the machine, never bad input, bad config or a stop asked
    for (a retry would fail the same way, later)."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None or isinstance(
        exc,
        (ArtifactError, InterruptedError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError),
    ):
        return False
    return isinstance(exc, (RuntimeError, MemoryError, OSError))


@functools.cache
def _task_of(spec: StageSpec):
    return stage_task(
        spec.build,
        spec.task_name,
        retries=STAGE_RETRIES,
        retry_delay_seconds=STAGE_RETRY_DELAY_S,
        retry_condition_fn=transient_failure,
    )


def stage_task(fn: Callable, name: str, **options: Any):
    """``fn`` as a Prefect task; caching off, because versions and resumption are the registry's job. Wherever a
    stage task can run, the project's log lines reach Prefect (:func:`route_logs_to_prefect`)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    route_logs_to_prefect()
    return task(name=name, log_prints=True, cache_policy=NO_CACHE, **options)(fn)


@functools.cache
def route_logs_to_prefect() -> None:
    """The ``portrait4d`` logger ("skipping the stage", "resuming from …", "waiting for …") at INFO: to the terminal
    through the console handler Prefect gives the root logger, and to the Prefect UI as logs of the flow or task run
    it happens in (Prefect's API handler, used only inside a run: outside one, e.g. a stage called from Python, its
    lines go to the terminal alone)."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging.handlers import APILogHandler

    class RunLogHandler(APILogHandler):
        def emit(self, record: logging.LogRecord) -> None:
            if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
                super().emit(record)

    log.setLevel(logging.INFO)
    if not any(isinstance(h, APILogHandler) for h in log.handlers):
        log.addHandler(RunLogHandler())
    # the stage-3 shard timeout runs in a worker thread, where Prefect warns once per task that a blocking call
    # cannot be interrupted: the shard's loop is Python between torch calls, so the timeout does stop it (it raises
    # at the next bytecode); the warning would only repeat per shard
    logging.getLogger("prefect.task_runs").addFilter(
        lambda record: "running in a worker thread. Timeouts in worker threads" not in record.getMessage()
    )
