"""Speed of the networks: renderer rays/s, Ψ forward and forward+backward images/s per preset.

CPU: tiny always, small at batch 1 only if one forward takes < 5 s, paper skipped. CUDA (when
available): every preset, fp32 and bf16 autocast. Figures, not assertions (bench/README.md).
"""

from __future__ import annotations

import contextlib
import time

import torch

from models import torchvision_compat

torchvision_compat.install()  # idempotent: before timm/torchvision

from models import cameras as cams  # noqa: E402
from models.param_counts import preset_config  # noqa: E402
from models.psi import build_psi  # noqa: E402
from models.rendering.triplane import TriplaneRenderer  # noqa: E402


def _variants():
    yield "cpu", False
    if torch.cuda.is_available():
        yield "cuda", False
        yield "cuda", True


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, iters):
    fn()  # warm-up
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    dt = (time.perf_counter() - t) / iters
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return dt, peak


def _autocast(device, bf16):
    return torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _row(name, value, unit, device, note, peak=None):
    return {"name": name, "value": round(value, 2), "unit": unit, "peak_mem_mb": peak, "device": device, "note": note}


def bench_renderer():
    """Tri-plane volume rendering (decoder + stratified/importance sampling + compositing), no SR."""
    rows = []
    for preset in ("tiny", "small", "paper"):
        cfg = preset_config(preset)
        for device, bf16 in _variants():
            if device == "cpu" and preset == "paper":
                continue
            r = TriplaneRenderer(cfg.render, cfg.psi.triplane_channels).to(device).eval()
            b = 1 if device == "cpu" and preset != "tiny" else 4
            res = cfg.render.neural_resolution
            planes = torch.randn(
                b, 3, cfg.psi.triplane_channels, cfg.psi.triplane_resolution, cfg.psi.triplane_resolution, device=device
            )
            labels = cams.sample_cameras(b, torch.Generator().manual_seed(0))[0].to(device)

            def run():
                with torch.no_grad(), _autocast(device, bf16):
                    r(planes, labels)

            dt, peak = _timed(run, device, 2 if device == "cpu" else 10)
            tag = " bf16" if bf16 else ""
            rows.append(
                _row(
                    f"renderer rays/s ({preset}, {res}², {cfg.render.n_coarse}+{cfg.render.n_fine}{tag})",
                    b * res * res / dt,
                    "rays/s",
                    device,
                    f"batch {b}, forward only",
                    peak,
                )
            )
    return rows


def _psi_case(preset, device, bf16, batch, backward):
    cfg = preset_config(preset)
    torch.manual_seed(0)
    psi = build_psi(cfg).to(device).train()
    res = cfg.psi.image_resolution
    x = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    m = torch.randn(batch, cfg.psi.motion_dim, device=device)
    c = cams.sample_cameras(batch, torch.Generator().manual_seed(0))[0].to(device)

    def run():
        with _autocast(device, bf16), contextlib.nullcontext() if backward else torch.no_grad():
            out = psi.render(psi(x, m, m), c)
            loss = out["image"].float().mean() + out["image_raw"].float().mean()
        if backward:
            loss.backward()
            psi.zero_grad(set_to_none=True)

    return run


def bench_psi():
    """Ψ (encoders + ViT + tri-plane decoder + render + SR) images/s, forward and forward+backward."""
    rows = []
    for preset in ("tiny", "small", "paper"):
        for device, bf16 in _variants():
            if device == "cpu" and preset == "paper":
                continue
            batch = 8 if (preset == "tiny" or device == "cuda") else 1
            if device == "cuda" and preset == "paper":
                batch = 2
            tag = " bf16" if bf16 else ""
            iters = 2 if device == "cpu" else 5
            try:
                fwd = _psi_case(preset, device, bf16, batch, backward=False)
                if device == "cpu" and preset != "tiny":
                    t = time.perf_counter()
                    fwd()
                    if time.perf_counter() - t > 5.0:
                        rows.append(
                            _row(
                                f"Ψ forward images/s ({preset}{tag})",
                                0.0,
                                "images/s",
                                device,
                                "skipped: one forward > 5 s on this CPU",
                            )
                        )
                        continue
                    iters = 1
                dt, peak = _timed(fwd, device, iters)
                rows.append(
                    _row(
                        f"Ψ forward images/s ({preset}, batch {batch}{tag})",
                        batch / dt,
                        "images/s",
                        device,
                        f"{dt:.3f} s/batch",
                        peak,
                    )
                )
                step = _psi_case(preset, device, bf16, batch, backward=True)
                dt, peak = _timed(step, device, iters)
                rows.append(
                    _row(
                        f"Ψ forward+backward images/s ({preset}, batch {batch}{tag})",
                        batch / dt,
                        "images/s",
                        device,
                        f"{dt:.3f} s/batch",
                        peak,
                    )
                )
            except torch.OutOfMemoryError:
                rows.append(_row(f"Ψ ({preset}, batch {batch}{tag})", 0.0, "images/s", device, "out of memory"))
                torch.cuda.empty_cache()
    return rows
