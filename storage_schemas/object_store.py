"""An artifact root on object storage (``s3://``, ``gs://``, ``memory://``, any fsspec URL): DESIGN.md §4, §8.

The registry keeps working on local files — a *mirror* of the root on this machine — and this module moves
whole artifacts between the mirror and the bucket:

* **publish** (:meth:`RemoteRoot.push`): every file of ``<kind>/<version>/`` is uploaded, ``manifest.json``
  last. An artifact without a manifest never reads as complete, so a publish cut off half-way is invisible and
  is finished by the next run that finds the artifact complete in its mirror.
* **read** (:meth:`RemoteRoot.pull`): a complete artifact missing from the mirror is downloaded into a temporary
  folder of the mirror and renamed into place. Manifests alone are read to list and resolve.
* **writers**: ``flock`` cannot exist on a bucket; a writer of ``kind@version`` holds a *lease* object
  ``<kind>/.lease-<version>`` (owner, expiry), renewed while it works. Another machine's writer waits while a live
  lease exists, then finds the version complete or takes the lease. Buckets have no compare-and-swap here, so two
  writers starting within the same second may both build (the artifact is the same: a version is a pure function
  of its inputs); the first manifest published wins and the second publish leaves it as it is.

Why not Icechunk (transactional Zarr): every artifact version is written by one writer and immutable once
published, and stage 3's Dask workers write disjoint video groups of one store whose index the flow writes once
at the end, so per-artifact prefixes with the manifest last already give atomic, concurrent-safe publishing;
Icechunk would add a second storage format that plain ``zarr.open_group(url)`` clients cannot read.

A stage's temporary folder (what a killed stage resumes from) stays in the mirror: a stage resumes on the machine
it was killed on; elsewhere it starts again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("portrait4d")
MANIFEST = "manifest.json"
LEASE_TTL_S = 120.0


def is_remote(root: str | os.PathLike) -> bool:
    """Whether ``root`` names object storage (a URL other than ``file://``)."""
    text = str(root)
    return "://" in text and not text.startswith("file://")


def local_path(root: str | os.PathLike) -> Path:
    """``file:///x`` → ``/x``; a plain path as given."""
    text = str(root)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def mirror_for(url: str) -> Path:
    """Where this machine keeps its copy of ``url``: ``$P4D_MIRROR`` or ``~/.cache/portrait4d/mirrors/<name>``."""
    if os.environ.get("P4D_MIRROR"):
        return Path(os.environ["P4D_MIRROR"]).resolve()
    name = url.split("://", 1)[1].strip("/").replace("/", "_")[:80] + "-" + hashlib.sha256(url.encode()).hexdigest()[:8]
    return Path.home() / ".cache" / "portrait4d" / "mirrors" / name


class RemoteRoot:
    """The artifact root at ``url`` through fsspec (s3fs, gcsfs, …: the backend of the URL's scheme)."""

    def __init__(self, url: str):
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url)
        self.base = self.base.rstrip("/")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def _path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def url_of(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    # ---- reading ----------------------------------------------------------------------
    def manifest(self, kind: str, version: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(self._path(kind, version, MANIFEST)))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def manifests(self, kind: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, version, manifest) of every published artifact (of ``kind``)."""
        pattern = self._path(kind or "*", "*", MANIFEST)
        out = []
        for p in sorted(self.fs.glob(pattern)):
            parts = p.rstrip("/").split("/")
            k, v = parts[-3], parts[-2]
            if k.startswith(".") or v.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                out.append((k, v, json.loads(self.fs.cat_file(p))))
        return out

    def pull(self, kind: str, version: str, mirror: Path) -> Path:
        """Download ``kind@version`` into ``mirror/kind/version`` (through a temporary folder); its path."""
        final = mirror / kind / version
        if (final / MANIFEST).exists():
            return final
        tmp = mirror / kind / f".pull-{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            src = self._path(kind, version)
            t0, size = time.time(), 0
            for f in self.fs.find(src):
                rel = f[len(src) + 1 :]
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f, str(dest))
                size += dest.stat().st_size
            if not (tmp / MANIFEST).exists():
                raise FileNotFoundError(f"{self.url_of(kind, version)} has no {MANIFEST}")
            if final.exists():  # an incomplete leftover
                shutil.rmtree(final)
            os.replace(tmp, final)
            log.info(
                "%s@%s: downloaded %.1f MiB from %s in %.1f s", kind, version, size / 2**20, self.url, time.time() - t0
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    # ---- publishing -------------------------------------------------------------------
    def push(self, local: Path, kind: str, version: str) -> None:
        """Upload ``local`` (a complete artifact folder) to ``kind/version``, its manifest last."""
        if self.manifest(kind, version) is not None:
            return  # published already (by this run before it was cut off, or by another writer)
        dest = self._path(kind, version)
        t0, size = time.time(), 0
        for f in sorted(p for p in local.rglob("*") if p.is_file() and p != local / MANIFEST):
            self.fs.put_file(str(f), f"{dest}/{f.relative_to(local).as_posix()}")
            size += f.stat().st_size
        self.fs.put_file(str(local / MANIFEST), f"{dest}/{MANIFEST}")
        log.info("%s@%s: published %.1f MiB to %s in %.1f s", kind, version, size / 2**20, self.url, time.time() - t0)

    def put(self, local: Path, name: str) -> None:
        self.fs.put_file(str(local), self._path(name))

    # ---- the writers' lease -----------------------------------------------------------
    def _read_lease(self, path: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(path))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_lease(self, path: str, ttl: float) -> None:
        self.fs.pipe_file(path, json.dumps({"owner": self.owner, "expires": time.time() + ttl}).encode())

    @contextlib.contextmanager
    def lease(self, kind: str, version: str, wait_s: float | None = None, ttl: float = LEASE_TTL_S) -> Iterator[None]:
        """Hold the lease on writing ``kind@version``: wait while another writer's lease is live (``wait_s`` at most,
        None = as long as it takes, 0 = refuse), take it, renew it every ``ttl/3`` until the block ends."""
        path = self._path(kind, f".lease-{version}")
        deadline = None if wait_s is None else time.monotonic() + wait_s
        said = False
        while True:
            held = self._read_lease(path)
            if held is None or held.get("owner") == self.owner or held.get("expires", 0) < time.time():
                self._write_lease(path, ttl)
                time.sleep(0.2)  # then read it back: of two writers that wrote at once, the later one keeps it
                held = self._read_lease(path)
                if held is not None and held.get("owner") == self.owner:
                    break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"another writer holds the lease on {kind}@{version} ({held}) at {self.url}")
            if not said:
                log.warning("another writer holds %s@%s at %s (%s): waiting for it", kind, version, self.url, held)
                said = True
            time.sleep(1.0)
        stop = threading.Event()

        def renew():
            while not stop.wait(ttl / 3):
                with contextlib.suppress(Exception):
                    self._write_lease(path, ttl)

        t = threading.Thread(target=renew, daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(5)
            with contextlib.suppress(FileNotFoundError):
                if (self._read_lease(path) or {}).get("owner") == self.owner:
                    self.fs.rm_file(path)
