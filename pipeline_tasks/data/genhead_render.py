"""Rendering GenHead samples into a store block: what stage 1 (``genhead_samples``) and stage 1b
(``analyser_samples``) share."""

from __future__ import annotations

import numpy as np
import torch

from models.genhead.ground_truth import head_relative_cameras
from models.genhead.procedural import ProceduralGenHead
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.previews import to_uint8


def stage_resolution(cfg: PipelineConfig) -> int:
    """The side of the rendered images: ``genhead.resolution``, else Ψ's input size."""
    return int(cfg.genhead.resolution or cfg.model.psi.image_resolution)


def make_generator(cfg: PipelineConfig) -> ProceduralGenHead:
    if cfg.genhead.backend != "procedural":
        raise ValueError(f"genhead.backend {cfg.genhead.backend!r} is not available; only 'procedural' is implemented")
    return ProceduralGenHead(sharpness=cfg.genhead.sharpness)


def render_samples(
    gen: ProceduralGenHead, samples: list[dict[str, torch.Tensor]], identities: list[int], resolution: int, batch: int
) -> dict[str, np.ndarray]:
    """Render sampled parameters (``[1, ·]`` each, cameras ``[1, V, 25]``) into a schema block
    (uint8 NHWC images, float32 labels); ``identities``: the identity label of each sample.

    The head is rendered with its sampled pose γ at the sampled (world) cameras; the store keeps
    the equivalent head-relative cameras T(γ)⁻¹·c (DESIGN.md §2) and γ as a label."""
    cat = {k: torch.cat([s[k] for s in samples]) for k in samples[0]}
    imgs, alphas, depths = [], [], []
    for s in range(0, len(samples), batch):
        sl = slice(s, s + batch)
        out = gen.render(
            cat["shape"][sl],
            cat["expression"][sl],
            cat["pose"][sl],
            cat["gaze"][sl],
            cat["z"][sl],
            cat["cameras"][sl],
            resolution,
        )
        imgs.append(to_uint8(out.rgb))
        alphas.append((out.alpha[:, :, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy())
        depths.append(out.depth[:, :, 0].numpy().astype(np.float16))
    return {
        "images": np.concatenate(imgs),
        "alpha": np.concatenate(alphas),
        "depth": np.concatenate(depths),
        "cameras": head_relative_cameras(cat["cameras"], cat["pose"]).numpy().astype(np.float32),
        "shape": cat["shape"].numpy().astype(np.float32),
        "expression": cat["expression"].numpy().astype(np.float32),
        "pose": cat["pose"].numpy().astype(np.float32),
        "gaze": cat["gaze"].numpy().astype(np.float32),
        "z": cat["z"].numpy().astype(np.float32),
        "identity": np.asarray(identities, dtype=np.int64),
    }
