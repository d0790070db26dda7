"""Labelled image grids for sample PNGs: tensors in [−1, 1] (NCHW) → one PNG with row/column titles."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """``[N,C,H,W]`` in [−1, 1] → ``[N,H,W,3]`` uint8 (1 channel is repeated, >3 channels truncated)."""
    x = images.detach().float().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected images [N,C,H,W], got shape {tuple(images.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3]
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def image_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    ncols: int | None = None,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    title: str | None = None,
    pad: int = 2,
    font_size: int = 11,
) -> np.ndarray:
    """Grid as ``[H,W,3]`` uint8. ``images``: ``[R,C,3,H,W]``, ``[N,3,H,W]`` with ``ncols``, or a list of
    ``[C,3,H,W]`` rows (all images the same size; use ``torch.nn.functional.interpolate`` first if not)."""
    if isinstance(images, (list, tuple)):
        images = torch.stack([torch.as_tensor(r) for r in images])
    if images.ndim == 4:
        n = images.shape[0]
        ncols = ncols or n
        nrows = -(-n // ncols)
        if nrows * ncols != n:
            filler = torch.full((nrows * ncols - n, *images.shape[1:]), -1.0, dtype=images.dtype)
            images = torch.cat([images, filler])
        images = images.reshape(nrows, ncols, *images.shape[1:])
    if images.ndim != 5:
        raise ValueError(f"expected [R,C,3,H,W] or [N,3,H,W], got shape {tuple(images.shape)}")
    R, C, _, H, W = images.shape
    if row_titles is not None and len(row_titles) != R:
        raise ValueError(f"{len(row_titles)} row titles for {R} rows")
    if col_titles is not None and len(col_titles) != C:
        raise ValueError(f"{len(col_titles)} column titles for {C} columns")
    tiles = to_uint8_hwc(images.reshape(R * C, *images.shape[2:])).reshape(R, C, H, W, 3)
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_w(s: str) -> int:
        box = probe.textbbox((0, 0), s, font=font)
        return box[2] - box[0]

    line_h = font_size + 4
    left = (max(text_w(s) for s in row_titles) + 2 * pad) if row_titles else 0
    top = (line_h if col_titles else 0) + (line_h if title else 0)
    width = left + C * (W + pad) + pad
    height = top + R * (H + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y0 = top
    if title:
        draw.text((pad, 1), title, fill=(0, 0, 0), font=font)
    if col_titles:
        for c, s in enumerate(col_titles):
            x = left + pad + c * (W + pad) + max(0, (W - text_w(s)) // 2)
            draw.text((x, top - line_h + 1), s, fill=(0, 0, 0), font=font)
    for r in range(R):
        y = y0 + pad + r * (H + pad)
        if row_titles:
            draw.text((pad, y + max(0, (H - line_h) // 2)), row_titles[r], fill=(0, 0, 0), font=font)
        for c in range(C):
            canvas.paste(Image.fromarray(tiles[r, c]), (left + pad + c * (W + pad), y))
    return np.asarray(canvas)


def save_image_grid(images, png_path: str | Path, **kwargs) -> Path:
    """``image_grid(...)`` written to ``png_path`` (parents created). Returns the path."""
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, **kwargs)).save(png_path)
    return png_path
