"""Make ``import torchvision`` (and so timm and lpips) work with the CPU build of torch.

The pinned torchvision 0.28.0 wheel is a CUDA build; next to the CPU torch its C++ extension
does not load, and torchvision's import then fails with ``operator torchvision::nms does not
exist``. :func:`install` first tries to load the real extension; only if that fails does it
register a pure-torch ``torchvision::nms`` (and a ``qnms`` schema) through ``torch.library``, so
the import succeeds (``torch.ops.torchvision.nms`` works; ``torchvision.ops.*`` still refuses, as
torchvision knows its extension is missing). It must run before anything
imports torchvision: ``models/__init__.py`` calls it. Still unavailable on CPU torch:
``deform_conv2d`` and ``torchvision.io`` image decoding (use PIL / decord).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_STATE: str | None = None  # "real" | "shim" | "absent" once install() ran
_LIBRARY = None  # keep the torch.library.Library alive


def _try_load_real_extension() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    candidates = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    for lib in candidates:
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError, ImportError):
            continue
    return False


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of kept boxes, by decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0)
    order = scores.argsort(descending=True)
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        xx1 = torch.maximum(x1[i], x1)
        yy1 = torch.maximum(y1[i], y1)
        xx2 = torch.minimum(x2[i], x2)
        yy2 = torch.minimum(y2[i], y2)
        inter = (xx2 - xx1).clamp_min(0) * (yy2 - yy1).clamp_min(0)
        iou = inter / (areas[i] + areas - inter).clamp_min(1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _register_shim() -> None:
    global _LIBRARY
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", nms_reference, "CompositeExplicitAutograd")

    def _qnms(dets, scores, iou_threshold):
        raise NotImplementedError("torchvision::qnms is unavailable with the CPU torch build (compat shim)")

    lib.impl("qnms", _qnms, "CompositeExplicitAutograd")
    _LIBRARY = lib


def install() -> str:
    """Idempotent. Returns ``"real"`` (extension loaded, nothing done), ``"shim"`` or ``"absent"``."""
    global _STATE
    if _STATE is not None:
        return _STATE
    if importlib.util.find_spec("torchvision") is None:
        _STATE = "absent"
    elif "torchvision" in sys.modules or _try_load_real_extension():
        _STATE = "real"
    else:
        _register_shim()
        _STATE = "shim"
    return _STATE


def state() -> str | None:
    return _STATE
