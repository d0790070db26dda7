"""Re-run stage 2a's held-out validation on published Ψ3d artifacts, with today's metrics.

    python bench/psi3d_validate.py psi3d@32dd69ce6ace [psi3d@…] [--log out.jsonl]

A Ψ3d trained before a metric existed (e.g. the mouth-region PSNR and the expression change) is scored
on the same held-out identities its stage validated on (the last ``psi3d.val_identities`` of its
``genhead_samples`` parent, pose 0, at ``eval.yaw_bins_degrees``), beside copy-input and the mean
training image. Prints one JSON line per artifact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models.losses import LPIPSLoss  # noqa: E402
from pipeline_tasks.data.genhead_views import GenHeadViews, split_identities  # noqa: E402
from pipeline_tasks.data.images import to_model_images  # noqa: E402
from pipeline_tasks.train_psi3d import baselines, load_psi3d, summarise, validate_views  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn_common import emit_row  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--log", default=None, help="append one JSON line per artifact here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    reg = ArtifactRegistry()
    for ref in args.artifacts:
        art = reg.resolve(ref)
        manifest = json.loads((art.path / "manifest.json").read_text())
        cfg = manifest["config"]
        parent = next(p for p in manifest["parents"] if p["kind"] == "genhead_samples")
        samples = reg.resolve(f"genhead_samples@{parent['version']}")
        data = GenHeadViews(samples.path / "store.zarr")
        train_ids, val_ids = split_identities(data.n, cfg["psi3d"]["val_identities"])
        bins = [float(b) for b in cfg["val_yaw_bins_degrees"]]
        views = data.novel_view_set(val_ids, bins)
        mean_image = to_model_images(
            data.get("images", train_ids[:256]).reshape(-1, data.resolution, data.resolution, 3)
        ).mean(0, keepdim=True)
        psi = load_psi3d(art)
        lpips_fn = LPIPSLoss(cfg["psi3d"]["losses"]["lpips_net"]).eval()
        m = validate_views(psi, views, "cpu", lpips_fn)
        s = summarise(m, baselines(views, mean_image), bins)
        keep = [k for k in s if "_yaw" not in k or k.startswith(("expression_change", "mouth_psnr_yaw"))]
        row = {
            "artifact": art.ref,
            "expressive_identities": int(views.expressive.sum()),
            **{k: round(s[k], 3) for k in keep},
        }
        emit_row(row, args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
