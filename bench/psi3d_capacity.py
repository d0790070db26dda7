"""Where does a Ψ3d lose the face's detail? Two probes of a published Ψ3d on one store identity.

    python bench/psi3d_capacity.py psi3d@<v> [--identity 737] [--steps 300] [--out bench/learn/<stem>]

1. **Paths**: the render at the input camera with the detail encoder's output zeroed, and with the global
   path's (the transformer's upsampled tokens) zeroed, each compared with the normal render (PSNR): which path
   carries the image.
2. **Free tri-plane fit**: the identity's tri-plane (from Ψ3d's own prediction) optimised directly against its
   stored views (L1 on the final and the raw image, Adam 1e-2), once with the renderer and SR frozen
   (``planes``) and once trainable (``all``): can this renderer show the open mouth and the eyes at all, and how
   fast. Writes ``<out>-free-planes.png`` / ``<out>-free-all.png`` (truth / fit / raw render per view).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from models.psi.network import PsiOutput  # noqa: E402
from pipeline_tasks.data.genhead_views import GenHeadViews, split_identities  # noqa: E402
from pipeline_tasks.data.images import to_model_images  # noqa: E402
from pipeline_tasks.eval.metrics import psnr  # noqa: E402
from pipeline_tasks.train_psi3d import load_psi3d  # noqa: E402
from pipeline_tasks.training.grid import save_image_grid  # noqa: E402
from storage_schemas.artifacts import ArtifactRegistry  # noqa: E402


@torch.no_grad()
def path_ablation(psi, views) -> dict[str, float]:
    """PSNR of the render with one path zeroed against the normal render, and each against the truth (0°)."""
    cams = views.cameras[None].expand(views.n, 1, 25)
    normal = psi.render(psi(views.source), cams, perturb=False)["image"][:, 0]
    out = {"normal_vs_truth": float(psnr(normal, views.targets[:, 0]).mean())}
    for name, module in (("detail", psi.detail_encoder), ("global", psi.upsampler)):
        hook = module.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        img = psi.render(psi(views.source), cams, perturb=False)["image"][:, 0]
        hook.remove()
        out[f"{name}_zeroed_vs_normal"] = float(psnr(img, normal).mean())
        out[f"{name}_zeroed_vs_truth"] = float(psnr(img, views.targets[:, 0]).mean())
    return out


def free_fit(psi, imgs, cams, mode: str, steps: int, path: Path) -> list[tuple[int, float]]:
    """Optimise the identity's tri-plane (``planes``), or it with the renderer and SR (``all``), on its views."""
    with torch.no_grad():
        start = psi(imgs[:1])
    planes = torch.nn.Parameter(start.triplanes.clone())
    bg = start.background.detach()
    params = [planes] + ([*psi.renderer.parameters(), *psi.superres.parameters()] if mode == "all" else [])
    opt = torch.optim.Adam(params, lr=1e-2)
    curve = []
    for step in range(steps + 1):
        r = psi.render(PsiOutput(planes, bg), cams[None], perturb=False)
        raw_target = F.interpolate(imgs, size=r["image_raw"].shape[-2:], mode="area")
        loss = (r["image"][0] - imgs).abs().mean() + (r["image_raw"][0] - raw_target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            curve.append((step, round(float(psnr(r["image"][0].detach().clamp(-1, 1), imgs).mean()), 2)))
            print(f"free fit ({mode}) step {step}: PSNR {curve[-1][1]:.2f} dB", flush=True)
    with torch.no_grad():
        r = psi.render(PsiOutput(planes, bg), cams[None], perturb=False)
    raw = F.interpolate(r["image_raw"][0].clamp(-1, 1), size=imgs.shape[-2:])
    save_image_grid(
        torch.stack([imgs, r["image"][0].clamp(-1, 1), raw]),
        path,
        col_titles=[f"view {i}" for i in range(len(imgs))],
        row_titles=["truth", "fit", "raw render"],
        title=f"free tri-plane fit ({mode}), {steps} steps",
    )
    return curve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("psi3d")
    ap.add_argument("--identity", type=int, default=737, help="a store identity (default: one held out at learn)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="/tmp/psi3d-capacity")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    reg = ArtifactRegistry()
    art = reg.resolve(args.psi3d)
    parent = next(p for p in art.manifest["parents"] if p["kind"] == "genhead_samples")
    data = GenHeadViews(reg.resolve(f"genhead_samples@{parent['version']}").path / "store.zarr")
    psi = load_psi3d(art)
    _, val = split_identities(data.n, art.manifest["config"]["psi3d"]["val_identities"])
    res = {"psi3d": art.ref, "paths": path_ablation(psi, data.novel_view_set(val[:8], [0.0]))}
    print(json.dumps(res["paths"]))
    ids = np.array([args.identity])
    imgs = to_model_images(data.get("images", ids)[0])
    cams = torch.from_numpy(data.get("cameras", ids)[0]).float()
    psi.train()
    for mode in ("planes", "all"):
        fresh = load_psi3d(art).train() if mode == "all" else psi
        t = time.time()
        res[f"free_fit_{mode}"] = free_fit(fresh, imgs, cams, mode, args.steps, Path(f"{args.out}-free-{mode}.png"))
        res[f"free_fit_{mode}_seconds"] = round(time.time() - t)
    Path(f"{args.out}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
