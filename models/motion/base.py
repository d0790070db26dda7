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

from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_FORMAT = "p4d-motion-encoder/1"
CHECKPOINT_NAME = "checkpoint.pt"
BACKENDS = ("synthetic", "pdfgc")


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


def build_motion_encoder(backend: str, **kwargs: Any) -> MotionEncoder:
    """``synthetic``: kwargs of :class:`SyntheticAnalyser` (``motion_dim``, ``identity_dim``, ``input_size``,
    ``width``, ...). ``pdfgc``: ``weights`` (path to the PD-FGC ``motion_model.pth``; required) and
    optionally ``crop`` — see :class:`PDFGCEncoder`."""
    if backend == "synthetic":
        from models.motion.synthetic_analyser import SyntheticAnalyser

        return SyntheticAnalyser(**kwargs)
    if backend == "pdfgc":
        from models.motion.pdfgc import PDFGCEncoder

        return PDFGCEncoder(**kwargs)
    raise ValueError(f"unknown motion encoder backend {backend!r}; known: {', '.join(BACKENDS)}")


def save_motion_encoder(path: str | Path, encoder: MotionEncoder, extra: dict[str, Any] | None = None) -> Path:
    """One ``torch.save`` file of plain data: backend, constructor kwargs, state dict (weights_only-loadable)."""
    import os
    import uuid

    backend = getattr(encoder, "backend", None)
    if backend not in BACKENDS:
        raise ValueError(f"cannot save a motion encoder of backend {backend!r}; known: {', '.join(BACKENDS)}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "backend": backend,
        "kwargs": encoder.init_kwargs(),
        "embedding_dim": encoder.embedding_dim,
        "state_dict": encoder.state_dict(),
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_motion_encoder(artifact_or_path: Any, device: str | torch.device = "cpu") -> MotionEncoder:
    """A frozen E_mot (eval, ``requires_grad=False``) from a ``motion_encoder`` artifact (anything with a
    ``.path``), its folder, or its ``checkpoint.pt``."""
    target = getattr(artifact_or_path, "path", artifact_or_path)
    path = Path(target)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"motion encoder checkpoint {path} does not exist; train one with the motion-encoder stage "
            "(flows/train_motion_encoder.py) or pass the path of a motion_encoder artifact"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read motion encoder checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a motion encoder checkpoint (format {CHECKPOINT_FORMAT!r})")
    encoder = build_motion_encoder(payload["backend"], **payload["kwargs"])
    try:
        encoder.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: state dict does not fit its recorded architecture: {exc}") from exc
    return freeze(encoder.to(device))
