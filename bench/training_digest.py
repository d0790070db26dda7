"""Digest of what stages 1→4 train, to check that a refactor changed nothing: run it in two trees and diff.

    python bench/training_digest.py /path/to/tree  # prints a digest of Ψ3d's, E_mot's and Ψ's EMA weights

Trains on the tests' FAST settings (tests/pipeline_tasks/stages/test_stages_2_to_4.py) with 6 steps per trainer and
the identity loss on, in a temporary registry, with the code of the tree given (~2 min on 2 cores). Used for the
Trainer refactor of 2026-12-05: identical digests before and after.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import tempfile
from pathlib import Path


def fast_overrides(root: Path) -> list[str]:
    """The FAST list of the stage tests, read from the source (not imported: a test module)."""
    src = (root / "tests/pipeline_tasks/stages/test_stages_2_to_4.py").read_text()
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "FAST":
            return ast.literal_eval(node.value)
    raise SystemExit("no FAST list in the stage tests")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]).resolve()
    sys.path.insert(0, str(root))
    os.chdir(root)
    import torch

    import models  # noqa: F401  (torchvision shim first)
    from pipeline_tasks import pseudo_mv
    from pipeline_tasks.analyser_samples import run_analyser_samples_stage
    from pipeline_tasks.config import load_config
    from pipeline_tasks.synthetic_videos import run_videos_stage
    from pipeline_tasks.train_motion_encoder import train_motion_encoder
    from pipeline_tasks.train_psi import train_psi
    from pipeline_tasks.train_psi3d import train_psi3d
    from storage_schemas.artifacts import ArtifactRegistry

    try:
        from pipeline_tasks.genhead_samples import run_genhead_stage
    except ImportError:  # trees before the stage was named after its kind
        from pipeline_tasks.genhead import run_genhead_stage

    fast = [f for f in fast_overrides(root) if not f.startswith(("psi3d.steps", "motion_encoder.steps", "psi.steps"))]
    cfg = load_config(
        "tiny",
        fast
        + ["psi3d.steps=6", "motion_encoder.steps=6", "psi.steps=6"]
        + ["psi.losses.identity.weight=1", "psi.losses.identity_backend=synthetic"],
    )
    reg = ArtifactRegistry(tempfile.mkdtemp())
    g = run_genhead_stage(cfg, reg, progress=False)
    p3 = train_psi3d(cfg, g, reg)
    me = train_motion_encoder(cfg, run_analyser_samples_stage(cfg, reg, progress=False), reg)
    pm = pseudo_mv.convert(cfg, p3, me, run_videos_stage(cfg, reg, progress=False), reg, progress=False)
    psi = train_psi(cfg, pm, p3, me, reg)

    def digest(path: Path, key: str | None) -> str:
        payload = torch.load(path, weights_only=True)
        sd = payload["state_dicts"]["psi"] if key is None else payload["state_dict"]
        h = hashlib.sha256()
        for k in sorted(sd):
            h.update(k.encode())
            h.update(sd[k].float().numpy().tobytes())
        return h.hexdigest()[:16]

    print("psi3d", digest(p3.path / "checkpoint.pt", None))
    print("motion_encoder", digest(me.path / "checkpoint.pt", "me"))
    print("psi", digest(psi.path / "checkpoint.pt", None))
    print("psi metrics", {k: round(v, 6) for k, v in psi.manifest["metrics"].items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
