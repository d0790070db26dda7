"""Issue 15's before/after: a tiny Ψ3d step's phases (bench/cases/profile.py) with the models and trainers of a base
revision and with this working tree, alternated in fresh processes within one run, as ratios.

The base is exported by ``git archive`` into a temporary folder (``BASE_REV``, default the last commit before issue
15's first change; set ``P4D_BENCH_BASE`` for another). The same harness (this tree's profile.py) runs against both
trees: only the imported ``models``/``pipeline_tasks`` differ. Each side runs ``ROUNDS`` times, ABBA, so a drift of
the shared machine hits both; a phase's figure is the median of its per-round ratios, with their range. Run:
``python bench/run.py --only speedup`` (~2 min on 2 cores).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "profile.py"
BASE_REV = os.environ.get("P4D_BENCH_BASE", "09ee15a")  # main before issue 15 (training precision, 2026-12-05)
ROUNDS, STEPS = 5, 4
_RUN_HARNESS = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def export_tree(rev: str, dest: Path) -> Path:
    """The files of ``rev`` (``git archive``) under ``dest``; a clear error when the revision is unknown here."""
    archive = dest / "base.tar"
    with archive.open("wb") as out:
        proc = subprocess.run(["git", "-C", str(REPO), "archive", rev], stdout=out, stderr=subprocess.PIPE)
    if proc.returncode:
        raise RuntimeError(f"cannot export revision {rev!r} of {REPO}: {proc.stderr.decode().strip()}")
    root = dest / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    archive.unlink()
    return root


def profile_in(tree: Path, preset: str = "tiny", steps: int = STEPS) -> dict[str, float]:
    """Milliseconds per phase of one profiled run of the harness importing ``tree``'s code (a fresh process)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        # by runpy from the tree's root: the script's own folder (bench/cases, which has a models.py) stays off sys.path
        [sys.executable, "-c", _RUN_HARNESS, str(HARNESS), "--preset", preset, "--steps", str(steps)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"profile of {tree} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(base: Path, head: Path, rounds: int = ROUNDS) -> dict[str, dict[str, float]]:
    """Per phase: the base's and the head's median milliseconds and the median over rounds of base/head within the
    round (> 1: the head is faster; pairing the two processes of a round cancels the machine's drift between
    rounds)."""
    runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    for i in range(rounds):  # ABBA…: neither side always runs first in its round
        for side, tree in (("base", base), ("head", head))[:: 1 if i % 2 == 0 else -1]:
            runs[side].append(profile_in(tree))
    phases = sorted(set(runs["base"][0]) & set(runs["head"][0]))
    out = {}
    for phase in phases:
        b = statistics.median(r[phase] for r in runs["base"])
        h = statistics.median(r[phase] for r in runs["head"])
        pairs = [rb[phase] / rh[phase] for rb, rh in zip(runs["base"], runs["head"]) if rh[phase]]
        out[phase] = {"base_ms": b, "head_ms": h, "speedup": statistics.median(pairs), "round_ratios": pairs}
    return out


def bench_phase_speedup_vs_base():
    with tempfile.TemporaryDirectory(prefix="p4d-speedup-") as tmp:
        base = export_tree(BASE_REV, Path(tmp))
        table = compare(base, REPO)
    whole = table["step"]["base_ms"]
    rows = []
    for phase, r in sorted(table.items(), key=lambda kv: -kv[1]["base_ms"]):
        rows.append(
            {
                "name": f"Ψ3d step (tiny) {phase}: base {BASE_REV} / this tree",
                "value": round(r["speedup"], 3),
                "unit": "× faster",
                "device": "cpu",
                "note": f"{r['base_ms']:.1f} → {r['head_ms']:.1f} ms ({100 * r['base_ms'] / whole:.0f}% of the base "
                f"step); medians of {ROUNDS} alternated processes × {STEPS} profiled steps; per-round ratios "
                f"{min(r['round_ratios']):.2f}–{max(r['round_ratios']):.2f}",
            }
        )
    return rows
