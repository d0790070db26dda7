"""Building, saving and loading an E_mot by backend name (``synthetic``, ``pdfgc``).

Kept apart from :mod:`models.motion.base` (the interface the backends subclass), so the backends import
the interface and this module imports the backends: imports run one way.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

from models.motion.base import MotionEncoder, freeze
from models.motion.pdfgc import PDFGCEncoder
from models.motion.synthetic_analyser import SyntheticAnalyser

CHECKPOINT_FORMAT = "p4d-motion-encoder/1"
CHECKPOINT_NAME = "checkpoint.pt"
BACKENDS = ("synthetic", "pdfgc")


def build_motion_encoder(backend: str, **kwargs: Any) -> MotionEncoder:
    """``synthetic``: kwargs of :class:`SyntheticAnalyser` (``motion_dim``, ``identity_dim``, ``input_size``,
    ``width``, ...). ``pdfgc``: ``weights`` (path to the PD-FGC ``motion_model.pth``; required) and
    optionally ``crop`` — see :class:`PDFGCEncoder`."""
    if backend == "synthetic":
        return SyntheticAnalyser(**kwargs)
    if backend == "pdfgc":
        return PDFGCEncoder(**kwargs)
    raise ValueError(f"unknown motion encoder backend {backend!r}; known: {', '.join(BACKENDS)}")


def save_motion_encoder(path: str | Path, encoder: MotionEncoder, extra: dict[str, Any] | None = None) -> Path:
    """One ``torch.save`` file of plain data: backend, constructor kwargs, state dict (weights_only-loadable)."""
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
