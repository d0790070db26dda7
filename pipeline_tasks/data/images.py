"""Stored pixels → model tensors: uint8 ``[..., H, W, 3]`` images and ``[..., H, W]`` alpha as every
network here takes them."""

from __future__ import annotations

import numpy as np
import torch


def to_model_images(u8: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` → float ``[..., 3, H, W]`` in [−1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(u8)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)


def to_model_alpha(u8: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W]`` → float ``[..., 1, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(u8)).float().div_(255.0).unsqueeze(-3)
