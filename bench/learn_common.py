"""What the two learning benchmarks (`learn_bench.py`, `learn_motion.py`) share: their command line and
the per-stage wall clock."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "learn"


def parse_args(
    doc: str, set_example: str, argv: list[str] | None = None, reuse_psi3d: bool = False
) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--preset", default="learn")
    ap.add_argument("--set", default="", help=f"dotted overrides, e.g. '{set_example}'")
    if reuse_psi3d:
        ap.add_argument(
            "--psi3d",
            default="",
            help="reuse this Ψ3d artifact (e.g. psi3d@7da23204122c, the one `make "
            "learn-bench` made) instead of resolving stages 1 and 2a from the current code",
        )
        ap.add_argument(
            "--analyser-samples",
            default="",
            help="reuse this analyser store (e.g. analyser_samples@751a02b21311) when its config equals the "
            "preset's, whatever code rendered it: a code change elsewhere does not cost its 12 min again",
        )
    ap.add_argument("--out", default=str(OUT_DIR))
    return ap.parse_args(argv)


def free_stem(out: Path, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, … when a report of that name is already there: a second run on the
    same day and host never overwrites the first (committed reports are results)."""
    candidate, n = stem, 1
    while any(out.glob(f"{candidate}.*")) or any(out.glob(f"{candidate}-*.png")):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def scratch_registry(root: str | Path, spec: str, samples):
    """A registry of its own for one A/B recipe (``root/<recipe>``) with ``samples`` linked in, not copied: the
    main registry stays untouched and a recipe trained before is reused. Returns (registry, samples in it)."""
    from storage_schemas.artifacts import ArtifactRegistry

    scratch = ArtifactRegistry(Path(root) / (spec.replace(" ", "_").replace("=", "-") or "preset"))
    link = scratch.root / samples.kind / samples.version
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(samples.path, target_is_directory=True)
    return scratch, scratch.resolve(samples.ref)


class StageClock:
    """``clock.run(name, fn, *args)`` calls ``fn`` and records its wall time under ``name``."""

    def __init__(self):
        self.start = time.time()
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        t = time.time()
        out = fn(*args, **kwargs)
        self.seconds[name] = time.time() - t
        return out

    @property
    def wall(self) -> float:
        return time.time() - self.start
