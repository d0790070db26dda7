"""Versioned artifacts: deterministic versions, atomic creation, resolution, lineage (DESIGN.md §4).

An artifact lives at ``<root>/<kind>/<version>/`` with ``manifest.json`` and its payload. The root
is ``$P4D_HOME`` (default ``./artifacts``).

* **Version** = the first 12 hex digits of a SHA-256 over (kind, resolved config, parent refs,
  schema version, package version, and for a stage the hash of the code it runs: its module and
  every project module it imports, comments and docstrings left out; ``storage_schemas/code_hash.py``).
  A change in a stage's code makes a new version of it and, through the parent refs, of everything
  after it; a commit that changes nothing a stage runs (documentation, tests, another stage) does
  not. The git commit is recorded in the manifest but not hashed.
* **Atomic creation**: a writer works in ``<root>/<kind>/.tmp-<version>-<uuid>/`` while holding an
  exclusive ``flock`` on ``<root>/<kind>/.lock-<version>``; ``commit()`` writes the manifest with
  status ``complete`` last and renames the folder to ``<version>/``. A writer killed at any point
  leaves only a ``.tmp-`` folder, which never reads as complete. The next writer of the same
  version takes the lock (released by the kernel when a process dies), adopts the newest leftover
  folder to resume from (``writer.resumed``) and deletes older ones.
* **Refusal**: ``resolve()`` raises :class:`ArtifactError` for a missing, incomplete or
  schema-mismatched artifact, naming what was asked and what was found.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from storage_schemas.object_store import RemoteRoot, is_remote, local_path, mirror_for

log = logging.getLogger("portrait4d")

MANIFEST = "manifest.json"
STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
STATUS_RUNNING = "incomplete (running)"  # a live writer holds its lock
STATUS_ABANDONED = (
    "incomplete (abandoned)"  # left by a killed stage: resumed by the next run, or removed by `make clean-stale`
)


class ArtifactError(RuntimeError):
    """An artifact that was asked for cannot be used (missing, incomplete, wrong schema)."""


def code_version() -> str:
    """Package version (what version hashes use)."""
    try:
        from importlib.metadata import version

        return version("portrait4d-pipeline")
    except Exception:  # not installed (running from a checkout)
        return "0+unknown"


def git_commit() -> str | None:
    """The checkout's commit, recorded in manifests for provenance (not hashed)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


REF_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def parse_ref(spec: str) -> tuple[str, str]:
    """``"kind@version"`` or ``"kind@latest"`` (or bare ``"kind"`` = latest) → (kind, version)."""
    kind, _, version = spec.partition("@")
    if not kind:
        raise ArtifactError(f"artifact reference {spec!r} has no kind; expected 'kind@version' or 'kind@latest'")
    version = version or "latest"
    for part in (kind, version):  # a ref names a folder inside the artifact root, never a path out of it
        if not REF_PART.fullmatch(part) or ".." in part:
            raise ArtifactError(
                f"artifact reference {spec!r}: {part!r} is not a kind or version name (letters, digits, '_', '-', '.'; "
                "no path separators or '..')"
            )
    return kind, version


@dataclass(frozen=True)
class Artifact:
    """A complete artifact on disk."""

    kind: str
    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.kind}@{self.version}"

    @property
    def parents(self) -> list[str]:
        return [f"{p['kind']}@{p['version']}" for p in self.manifest.get("parents", [])]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    def __str__(self) -> str:
        return self.ref


def _parent_refs(parents: Iterable[Artifact | str]) -> list[dict[str, str]]:
    refs = []
    for p in parents:
        if isinstance(p, Artifact):
            refs.append({"kind": p.kind, "version": p.version})
        else:
            kind, version = parse_ref(p)
            refs.append({"kind": kind, "version": version})
    return refs


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


@dataclass
class Temporary:
    """A ``<kind>/.tmp-<version>-<id>/`` folder: a stage in progress (``in_use``) or abandoned by a killed one."""

    path: Path
    kind: str
    version: str
    in_use: bool
    idle_s: float  # since the newest write inside it
    bytes: int


def lock_is_held(lock_path: Path) -> bool:
    """Whether some process holds the ``flock`` on ``lock_path``, without touching it: Linux lists every
    lock in /proc/locks by inode (elsewhere a non-blocking try, released at once)."""
    try:
        inode = lock_path.stat().st_ino
    except FileNotFoundError:
        return False
    try:
        with open("/proc/locks") as fh:
            return any(
                line.split()[1] == "FLOCK" and line.split()[5].rsplit(":", 1)[-1] == str(inode)
                for line in fh
                if len(line.split()) > 5
            )
    except OSError:
        pass
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        return False


def _last_write(path: Path) -> float:
    """Newest mtime of ``path`` and the files and folders up to two levels below it."""
    newest = path.stat().st_mtime
    for p in list(path.iterdir()) + [q for d in path.iterdir() if d.is_dir() for q in d.iterdir()]:
        with contextlib.suppress(OSError):
            newest = max(newest, p.stat().st_mtime)
    return newest


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class ArtifactWriter:
    """Builds one artifact version in a temporary folder; ``commit()`` publishes it."""

    registry: "ArtifactRegistry"
    kind: str
    version: str
    config: dict[str, Any]
    parents: list[dict[str, str]]
    schema_version: int
    path: Path
    resumed: bool
    code_hash: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    committed: Artifact | None = None

    def commit(self) -> Artifact:
        """Write the manifest (status complete), rename into place, refresh the catalog."""
        final = self.registry.root / self.kind / self.version
        if final.exists():
            raise ArtifactError(f"{self.kind}@{self.version} already exists at {final}; refusing to overwrite it")
        manifest = {
            "kind": self.kind,
            "version": self.version,
            "status": STATUS_COMPLETE,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "schema_version": self.schema_version,
            "config": self.config,
            "config_hash": config_hash(self.config),
            "parents": self.parents,
            "code_version": code_version(),
            **({"code_hash": self.code_hash} if self.code_hash else {}),
            "git_commit": git_commit(),
            "counts": self.counts,
            "metrics": self.metrics,
            "wall_time_s": round(time.time() - self.started, 3),
            "hardware": {"host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count()},
            **({"extra": self.extra} if self.extra else {}),
        }
        _write_json_atomic(self.path / MANIFEST, manifest)
        os.replace(self.path, final)
        _fsync_dir(final.parent)
        if self.registry.remote is not None:
            self.registry.remote.push(final, self.kind, self.version)
        self.committed = Artifact(self.kind, self.version, final, manifest)
        self.registry.write_catalog()
        return self.committed


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ArtifactCompleted(ArtifactError):
    """The version asked to be written was completed by another process while this one waited for its lock."""


def _acquire(lock, lock_path: Path, what: str, wait_s: float | None) -> None:
    """Exclusive ``flock`` on ``lock``; while another process holds it, say so once and wait (``wait_s``)."""
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if wait_s == 0:
            raise ArtifactError(
                f"another process is writing {what} (lock {lock_path} is held); wait for it to finish"
            ) from None
    log.warning("another process is writing %s (lock %s): waiting for it", what, lock_path)
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                raise ArtifactError(
                    f"another process is still writing {what} after {wait_s:.0f} s (lock {lock_path} is held)"
                ) from None
            time.sleep(0.5)


class ArtifactRegistry:
    """All artifacts under one root."""

    def __init__(self, root: str | os.PathLike | None = None):
        """``root`` (default ``$P4D_HOME``): a folder, or an object-storage URL (``s3://bucket/prefix``, any fsspec
        URL): then ``self.root`` is this machine's mirror of it and ``self.remote`` the bucket
        (storage_schemas/object_store.py)."""
        spec = root if root is not None else os.environ.get("P4D_HOME", "./artifacts")
        self.remote: RemoteRoot | None = None
        if is_remote(spec):
            self.remote = RemoteRoot(str(spec))
            self.root = mirror_for(self.remote.url)
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self.root = local_path(spec).resolve()

    @property
    def location(self) -> str:
        """The root as the user named it: the URL on object storage, else the folder."""
        return self.remote.url if self.remote is not None else str(self.root)

    # ---- versions -------------------------------------------------------------------------
    def version_for(
        self,
        kind: str,
        config: dict[str, Any],
        parents: Iterable[Artifact | str] = (),
        schema_version: int = 1,
        code_hash: str | None = None,
    ) -> str:
        """Hash of the kind, config, parents, schema version, package version and (for stages) the
        hash of the code the stage runs (``storage_schemas.code_hash``)."""
        payload = {
            "kind": kind,
            "config": config,
            "parents": _parent_refs(parents),
            "schema_version": schema_version,
            "code_version": code_version(),
        }
        if code_hash is not None:
            payload["code_hash"] = code_hash
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:12]

    # ---- reading --------------------------------------------------------------------------
    def _read_manifest(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads((path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def find(self, kind: str, version: str) -> Artifact | None:
        """The complete artifact ``kind@version``, or None."""
        path = self.root / kind / version
        manifest = self._read_manifest(path)
        complete = manifest is not None and manifest.get("status") == STATUS_COMPLETE
        if self.remote is not None:
            if complete:
                self.remote.push(path, kind, version)  # no-op when published; finishes a publish cut off half-way
            else:
                published = self.remote.manifest(kind, version)
                if published is None or published.get("status") != STATUS_COMPLETE:
                    return None
                path = self.remote.pull(kind, version, self.root)
                manifest, complete = self._read_manifest(path), True
        if not complete:
            return None
        return Artifact(kind, version, path, manifest)

    def list(self, kind: str | None = None) -> list[Artifact]:
        """Complete artifacts, oldest first."""
        kinds = (
            [kind] if kind else sorted(p.name for p in self.root.glob("*") if p.is_dir() and not p.name.startswith("."))
        )
        out = []
        for k in kinds:
            for d in sorted((self.root / k).glob("*")):
                if d.is_dir() and not d.name.startswith("."):
                    manifest = self._read_manifest(d)
                    if manifest is not None and manifest.get("status") == STATUS_COMPLETE:
                        out.append(Artifact(k, d.name, d, manifest))
        if self.remote is not None:  # published ones not in this mirror yet: manifests only (resolve downloads)
            here = {a.ref for a in out}
            out += [
                Artifact(k, v, self.root / k / v, m)
                for k, v, m in self.remote.manifests(kind)
                if f"{k}@{v}" not in here and m.get("status") == STATUS_COMPLETE
            ]

        def mtime(a: Artifact) -> float:
            with contextlib.suppress(OSError):
                return a.path.stat().st_mtime
            return 0.0

        return sorted(out, key=lambda a: (a.manifest.get("created_at", ""), mtime(a)))

    def incomplete(self, kind: str | None = None) -> list[Path]:
        """Leftover temporary folders (killed or running writers)."""
        pattern = f"{kind}/.tmp-*" if kind else "*/.tmp-*"
        return sorted(p for p in self.root.glob(pattern) if p.is_dir())

    def temporaries(self, kind: str | None = None) -> list["Temporary"]:
        """Every temporary folder with whether a live writer holds it and how long since it was last written."""
        now = time.time()
        return [
            Temporary(
                p,
                p.parent.name,
                p.name.split("-")[1],
                lock_is_held(p.parent / f".lock-{p.name.split('-')[1]}"),
                now - _last_write(p),
                _dir_bytes(p),
            )
            for p in self.incomplete(kind)
        ]

    def remove_abandoned(self, older_than_s: float = 0.0, kind: str | None = None) -> list["Temporary"]:
        """Delete temporary folders no writer holds, untouched for ``older_than_s``; return what was removed.

        An abandoned folder is what a killed stage left to resume from (checkpoints, finished videos):
        removing it gives that progress up. The version's lock is taken while removing, so a writer
        starting at that moment is refused rather than resuming from a half-deleted folder."""
        removed = []
        for t in self.temporaries(kind):
            if t.in_use or t.idle_s < older_than_s:
                continue
            with open(t.path.parent / f".lock-{t.version}", "a+") as lock:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer took it after all
                try:
                    shutil.rmtree(t.path)
                    removed.append(t)
                finally:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        if removed:
            self.write_catalog()
        return removed

    def resolve(self, spec: str | Artifact, schema_version: int | None = None, preset: str | None = None) -> Artifact:
        """``kind@latest`` / ``kind@<version>`` → a complete artifact, or a clear ArtifactError. With ``preset``,
        ``kind@latest`` is the newest one made with that preset (another preset's is never picked by accident)."""
        if isinstance(spec, Artifact):
            spec = spec.ref
        kind, version = parse_ref(spec)
        if version == "latest":
            found = self.list(kind)
            if preset is not None:
                others = sorted({str(a.config.get("preset")) for a in found} - {preset})
                found = [a for a in found if a.config.get("preset") == preset]
                if not found and others:
                    raise ArtifactError(
                        f"no complete '{kind}' artifact of preset '{preset}' under {self.root} (there are some of "
                        f"{', '.join(others)}); run its stage with preset '{preset}' or name one ({kind}@<version>)"
                    )
            if not found:
                leftovers = self.incomplete(kind)
                hint = f" ({len(leftovers)} incomplete run(s) under {self.root / kind})" if leftovers else ""
                raise ArtifactError(
                    f"no complete '{kind}' artifact under {self.root}{hint}; run the stage that produces it first"
                )
            art = self.find(found[-1].kind, found[-1].version) or found[-1]  # downloaded from object storage
        else:
            path = self.root / kind / version
            art = self.find(kind, version)
            if art is None:
                tmp = list((self.root / kind).glob(f".tmp-{version}-*")) if (self.root / kind).exists() else []
                if tmp or path.exists():
                    raise ArtifactError(
                        f"artifact {kind}@{version} is incomplete ({tmp[0] if tmp else path}): its writer did not "
                        "finish; rerun the stage to resume it"
                    )
                raise ArtifactError(f"artifact {kind}@{version} does not exist under {self.root}")
        if schema_version is not None and art.manifest.get("schema_version") != schema_version:
            raise ArtifactError(
                f"artifact {art.ref} at {art.path} has schema version {art.manifest.get('schema_version')}, "
                f"this code reads schema version {schema_version}; regenerate it with the current code"
            )
        return art

    # ---- writing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(
        self,
        kind: str,
        config: dict[str, Any],
        parents: Iterable[Artifact | str] = (),
        schema_version: int = 1,
        version: str | None = None,
        code_hash: str | None = None,
        wait_s: float | None = None,
    ) -> Iterator[ArtifactWriter]:
        """Build ``kind@version`` under a lock; resume a killed writer's folder if one is left.

        While another process writes the same version, wait for it (``wait_s`` seconds at most, None = as long as
        it takes, 0 = refuse at once); if it completed the version meanwhile, raise :class:`ArtifactCompleted`
        (``run_once`` returns that artifact). The body must call ``commit()``; if it raises or returns without
        committing, the temporary folder is kept for the next run to resume.
        """
        parents = list(parents)
        version = version or self.version_for(kind, config, parents, schema_version, code_hash)
        if self.find(kind, version) is not None:
            raise ArtifactError(f"{kind}@{version} is already complete at {self.root / kind / version}")
        kind_dir = self.root / kind
        kind_dir.mkdir(parents=True, exist_ok=True)
        lock_path = kind_dir / f".lock-{version}"
        with open(lock_path, "a+") as lock, contextlib.ExitStack() as remote_lease:
            _acquire(lock, lock_path, f"{kind}@{version}", wait_s)
            if self.remote is not None:  # writers on other machines: a lease object beside the artifacts
                try:
                    remote_lease.enter_context(self.remote.lease(kind, version, wait_s))
                except TimeoutError as exc:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
                    raise ArtifactError(str(exc)) from None
            try:
                if self.find(kind, version) is not None:  # finished by the previous lock holder
                    raise ArtifactCompleted(f"{kind}@{version} was completed by another process")
                leftovers = sorted(kind_dir.glob(f".tmp-{version}-*"), key=lambda p: p.stat().st_mtime)
                resumed = bool(leftovers)
                if leftovers:
                    path = leftovers[-1]
                    for old in leftovers[:-1]:
                        shutil.rmtree(old, ignore_errors=True)
                    stale = path / MANIFEST
                    if stale.exists():  # killed between manifest and rename: rewritten on commit
                        stale.unlink()
                else:
                    path = kind_dir / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
                    path.mkdir()
                w = ArtifactWriter(
                    registry=self,
                    kind=kind,
                    version=version,
                    config=config,
                    parents=_parent_refs(parents),
                    schema_version=schema_version,
                    path=path,
                    resumed=resumed,
                    code_hash=code_hash,
                )
                yield w
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            if self.find(kind, version) is not None:
                lock_path.unlink()

    # ---- lineage --------------------------------------------------------------------------
    def ancestors(self, spec: str | Artifact) -> list[Artifact]:
        """Every artifact this one was made from, nearest first (breadth-first, no repeats)."""
        start = self.resolve(spec)
        seen, out, queue = {start.ref}, [], list(start.parents)
        while queue:
            ref = queue.pop(0)
            if ref in seen:
                continue
            seen.add(ref)
            kind, version = parse_ref(ref)
            art = self.find(kind, version)
            if art is None:
                raise ArtifactError(f"{start.ref} names parent {ref}, which is missing or incomplete under {self.root}")
            out.append(art)
            queue.extend(art.parents)
        return out

    def descendants(self, spec: str | Artifact) -> list[Artifact]:
        """Every artifact made (directly or not) from this one."""
        start = self.resolve(spec)
        children: dict[str, list[Artifact]] = {}
        for a in self.list():
            for p in a.parents:
                children.setdefault(p, []).append(a)
        seen, out, queue = {start.ref}, [], [start.ref]
        while queue:
            for child in children.get(queue.pop(0), []):
                if child.ref not in seen:
                    seen.add(child.ref)
                    out.append(child)
                    queue.append(child.ref)
        return out

    # ---- catalog --------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.parquet"

    def catalog_rows(self) -> list[dict[str, Any]]:
        rows = []
        for a in self.list():
            m = a.manifest
            rows.append(
                {
                    "kind": a.kind,
                    "version": a.version,
                    "status": m.get("status", STATUS_COMPLETE),
                    "created_at": m.get("created_at"),
                    "parents": a.parents,
                    "config_hash": m.get("config_hash"),
                    "code_version": m.get("code_version"),
                    "code_hash": m.get("code_hash"),
                    "git_commit": m.get("git_commit"),
                    "schema_version": m.get("schema_version"),
                    "counts": canonical_json(m.get("counts", {})),
                    "metrics": canonical_json(_headline(m.get("metrics", {}))),
                    "wall_time_s": m.get("wall_time_s"),
                    "bytes": _dir_bytes(a.path),
                    "path": self.remote.url_of(a.kind, a.version) if self.remote is not None else str(a.path),
                }
            )
        for t in self.temporaries():
            tmp, version = t.path, t.version
            rows.append(
                {
                    "kind": tmp.parent.name,
                    "version": version,
                    "status": STATUS_RUNNING if t.in_use else STATUS_ABANDONED,
                    "created_at": _dt.datetime.fromtimestamp(tmp.stat().st_mtime, _dt.timezone.utc).isoformat(
                        timespec="seconds"
                    ),
                    "parents": [],
                    "config_hash": None,
                    "code_version": None,
                    "code_hash": None,
                    "git_commit": None,
                    "schema_version": None,
                    "counts": "{}",
                    "metrics": "{}",
                    "wall_time_s": None,
                    "bytes": t.bytes,
                    "path": str(tmp),
                }
            )
        return rows

    def write_catalog(self) -> Path:
        """Rebuild ``catalog.parquet`` from the manifests (atomic replace)."""
        from storage_schemas.catalog import write_catalog

        path = write_catalog(self.catalog_rows(), self.catalog_path)
        if self.remote is not None:
            self.remote.put(path, path.name)
        return path


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalar metrics only (nested tables stay in the manifest)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
