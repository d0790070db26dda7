"""E_mot, the motion encoder interface (DESIGN.md §1): ``encode(images [B,3,H,W] in [−1,1]) → [B, D]``.

Ψ reads motion only through this interface, so the backend is a configuration choice:

* ``synthetic`` — :class:`~models.motion.synthetic_analyser.SyntheticAnalyser`, trained in stage 2b
  on GenHead samples (known expression/gaze labels); its penultimate motion features are the
  embedding (D = ``model.psi.motion_dim``).
* ``pdfgc`` — :class:`~models.motion.pdfgc.PDFGCEncoder`, the published PD-FGC ``FanEncoder``
  (224² input, eye 6 + emotion 30 + mouth 512 = 548-d), with user-supplied weights.

E_mot is frozen wherever it is used (Ψ training, conversion): :func:`freeze` puts it in eval mode
with ``requires_grad=False`` and keeps it in eval mode even when a parent module calls ``.train()``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MotionEncoder(nn.Module):
    """Base class: subclasses set ``embedding_dim`` and implement ``encode``; ``forward = encode``."""

    embedding_dim: int
    backend: str
    _frozen: bool = False

    def init_kwargs(self) -> dict[str, Any]:  # pragma: no cover - interface
        """Constructor kwargs that rebuild this architecture (stored in checkpoints)."""
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)

    def train(self, mode: bool = True) -> "MotionEncoder":
        return super().train(False if self._frozen else mode)

    @staticmethod
    def check_images(images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"motion encoder expects images [B,3,H,W] in [-1,1], got shape {tuple(images.shape)}")


def freeze(encoder: MotionEncoder) -> MotionEncoder:
    """Eval mode, no gradients, and stays in eval mode under a parent's ``.train()``."""
    encoder.requires_grad_(False)
    encoder._frozen = True
    return encoder.eval()
