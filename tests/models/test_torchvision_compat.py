"""The CPU torchvision shim: imports work, the shim's nms is right, and it stays out of the way
when the real extension loads."""

import subprocess
import sys
import textwrap

import torch

import models  # noqa: F401  (installs the shim)
from models import torchvision_compat


def test_torchvision_timm_lpips_import():
    import lpips  # noqa: F401
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    assert torchvision_compat.state() in {"real", "shim"}


def test_nms_matches_bruteforce():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 20 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    keep = torch.ops.torchvision.nms(boxes, scores, 0.3)

    # every pair of kept boxes overlaps at most the threshold, and every dropped box overlaps a
    # higher-scoring kept one by more than it
    def iou(a, b):
        lt = torch.maximum(a[:2], b[:2])
        rb = torch.minimum(a[2:], b[2:])
        inter = (rb - lt).clamp_min(0).prod()

        def area(x):
            return (x[2:] - x[:2]).prod()

        return inter / (area(a) + area(b) - inter)

    kept = set(keep.tolist())
    assert scores[keep].diff().le(0).all()
    for i in kept:
        for j in kept:
            if i < j:
                assert iou(boxes[i], boxes[j]) <= 0.3
    for d in set(range(60)) - kept:
        assert any(iou(boxes[d], boxes[k]) > 0.3 and scores[k] >= scores[d] for k in kept)


def test_shim_does_nothing_when_real_extension_loads():
    # Import the module file directly (not the package) so that install() has not run yet.
    code = textwrap.dedent(
        """
        import importlib.util, torch
        spec = importlib.util.spec_from_file_location("tvc", "models/torchvision_compat.py")
        tvc = importlib.util.module_from_spec(spec); spec.loader.exec_module(tvc)
        tvc._try_load_real_extension = lambda: True
        assert tvc.install() == "real"
        assert tvc.install() == "real"   # idempotent
        try:
            torch.ops.torchvision.nms
        except (AttributeError, RuntimeError):
            print("no-op")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "no-op" in out.stdout
