"""Preview images of the synthetic world: a contact sheet (identities × views) and an expression
sweep (each named expression at 0, 0.5, 1 for one identity), plus a pose/gaze strip.

    python -m pipeline_tasks.data.previews --out outputs/previews [--resolution 128]

Also the image-grid helpers used by stage 1 and the video stage (uint8 NHWC in, PNG out).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from models import cameras as cam
from models.genhead import params as P
from models.genhead.ground_truth import GroundTruth, identity_ids
from models.genhead.procedural import ProceduralGenHead

PREVIEW_SEED = 7  # base seed of the preview identities (disjoint from stage 1 / videos / eval)


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """``[..., 3, H, W]`` in [−1, 1] → ``[..., H, W, 3]`` uint8."""
    x = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def grid(
    images: np.ndarray,
    pad: int = 2,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    label_width: int = 90,
    label_height: int = 14,
) -> Image.Image:
    """Tile ``[R, C, H, W, 3]`` uint8 images into one picture with optional text labels."""
    r, c, h, w, _ = images.shape
    lw = label_width if row_labels else 0
    lh = label_height if col_labels else 0
    out = Image.new("RGB", (lw + c * (w + pad) + pad, lh + r * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i in range(r):
        for j in range(c):
            out.paste(Image.fromarray(images[i, j]), (lw + pad + j * (w + pad), lh + pad + i * (h + pad)))
        if row_labels:
            draw.text((3, lh + pad + i * (h + pad) + h // 2 - 5), row_labels[i], fill=(0, 0, 0))
    if col_labels:
        for j, t in enumerate(col_labels):
            draw.text((lw + pad + j * (w + pad) + 3, 1), t, fill=(0, 0, 0))
    return out


def preview_views(n_views: int) -> torch.Tensor:
    """Yaw/pitch of the preview views: frontal, then alternating three-quarter and profile."""
    yaws = [0.0, 0.55, -0.55, 1.1, -1.1, 0.3][:n_views]
    pitch = [0.0, 0.1, -0.05, 0.05, 0.0, 0.25][:n_views]
    return torch.tensor(list(zip(yaws, pitch)))


def contact_sheet(
    gen: ProceduralGenHead,
    n_identities: int = 16,
    n_views: int = 4,
    resolution: int = 128,
    base_seed: int = PREVIEW_SEED,
) -> Image.Image:
    """Random identities (random expression, pose, gaze, z) × fixed preview cameras."""
    ids = identity_ids(base_seed, n_identities)
    rows = []
    yp = preview_views(n_views)
    cams = cam.orbit_label(yp[:, 0], yp[:, 1], cam.DEFAULT_RADIUS)
    for i in ids:
        p = P.sample_params(1, torch.Generator().manual_seed(i), pose_scale=0.5)
        rows.append(p)
    batch = {k: torch.cat([p[k] for p in rows]) for k in rows[0]}
    out = gen.render_params(batch, cams[None].expand(n_identities, -1, -1), resolution)
    return grid(
        to_uint8(out.rgb), row_labels=None, col_labels=[f"yaw {math.degrees(y):.0f}°" for y in yp[:, 0].tolist()]
    )


def expression_sweep(gt: GroundTruth, identity: int, resolution: int = 128, strengths=(0.0, 0.5, 1.0)) -> Image.Image:
    """Rows: named expressions; columns: strengths, frontal, plus strength 1 from a three-quarter view."""
    names = P.EXPRESSION_NAMES
    e = torch.zeros(len(names), len(strengths) + 1, len(names))
    for i in range(len(names)):
        for j, s in enumerate(strengths):
            e[i, j, i] = s
        e[i, -1, i] = strengths[-1]
    front = cam.orbit_label(torch.tensor([0.0]), torch.tensor([0.0]))[0]
    side = cam.orbit_label(torch.tensor([0.6]), torch.tensor([0.05]))[0]
    cams = torch.stack([front] * len(strengths) + [side])
    n = len(names) * (len(strengths) + 1)
    out = gt.render([identity] * n, cams.repeat(len(names), 1), resolution, expression=e.reshape(n, -1))
    imgs = to_uint8(out.rgb).reshape(len(names), len(strengths) + 1, resolution, resolution, 3)
    return grid(
        imgs,
        row_labels=names,
        col_labels=[f"{s:g}" for s in strengths] + [f"{strengths[-1]:g}, yaw 34°"],
        label_width=80,
    )


def pose_gaze_strip(gt: GroundTruth, identity: int, resolution: int = 128) -> Image.Image:
    """Row 1: head yaw/pitch/roll from a fixed frontal camera; row 2: gaze directions."""
    poses = torch.tensor([[-0.5, 0, 0], [0.5, 0, 0], [0, -0.3, 0], [0, 0.3, 0], [0, 0, 0.3]])
    gazes = torch.tensor([[-0.4, 0], [0.4, 0], [0, 0.3], [0, -0.3], [0, 0]])
    front = cam.orbit_label(torch.tensor([0.0]), torch.tensor([0.0]))[0]
    ids = [identity] * 10
    pose = torch.cat([poses, torch.zeros(5, 3)])
    gaze = torch.cat([torch.zeros(5, 2), gazes])
    out = gt.render(ids, front[None].expand(10, -1), resolution, pose=pose, gaze=gaze)
    imgs = to_uint8(out.rgb).reshape(2, 5, resolution, resolution, 3)
    return grid(imgs, row_labels=["pose", "gaze"], label_width=40)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/previews", type=Path)
    ap.add_argument("--resolution", default=128, type=int)
    ap.add_argument("--identities", default=16, type=int)
    ap.add_argument("--views", default=4, type=int)
    ap.add_argument("--seed", default=PREVIEW_SEED, type=int, help="base seed of the preview identities")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    gen = ProceduralGenHead()
    gt = GroundTruth(gen)
    paths = {
        "contact_sheet.png": contact_sheet(gen, args.identities, args.views, args.resolution, args.seed),
        "expression_sweep.png": expression_sweep(gt, identity_ids(args.seed, 1)[0], args.resolution),
        "pose_gaze.png": pose_gaze_strip(gt, identity_ids(args.seed, 1)[0], args.resolution),
    }
    for name, img in paths.items():
        img.save(args.out / name)
        print(args.out / name)


if __name__ == "__main__":
    main()
