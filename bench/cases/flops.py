"""Work and utilisation: FLOPs per training step (Ψ3d, Ψ, D) and per converted frame, the time each takes here,
the FLOP/s that makes, and that as a fraction of the device's peak.

The peak: on the CPU, the best of a 2048² fp32 matmul measured in this run (what this machine's BLAS attains,
all its threads); on a GPU, the same in bf16 beside the datasheet figure (``DATASHEET_BF16_DENSE``). FLOP counts:
models/flops.py (the counter for the networks, the renderer's lookups and ray marching analytically). Steps are
forward + backward without the optimiser, at the preset's batch; the frame is Ψ3d + K views, no E_mot.
"""

from __future__ import annotations

import time

import torch

from models import torchvision_compat

torchvision_compat.install()

from models.flops import (  # noqa: E402
    converted_frame,
    converted_frame_flops,
    discriminator_step_flops,
    matmul_peak_flops,
    psi_step,
    psi_step_flops,
)
from pipeline_tasks.config import load_config  # noqa: E402

DATASHEET_BF16_DENSE = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # FLOP/s, dense (no sparsity)


def _seconds(fn, device: str, iters: int) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def _rows(name: str, flops: int, seconds: float, peak: float, device: str, note: str) -> list[dict]:
    achieved = flops / seconds
    return [
        {"name": f"{name}: GFLOP", "value": round(flops / 1e9, 3), "unit": "GFLOP", "device": device, "note": note},
        {"name": f"{name}: achieved", "value": round(achieved / 1e9, 2), "unit": "GFLOP/s", "device": device,
         "note": f"{seconds * 1e3:.1f} ms"},
        {"name": f"{name}: utilisation", "value": round(100 * achieved / peak, 1), "unit": "% of peak",
         "device": device, "note": f"peak {peak / 1e9:.0f} GFLOP/s"},
    ]  # fmt: skip


def bench_flops_and_utilisation():
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        peak = matmul_peak_flops(device, n=8192 if device == "cuda" else 2048, dtype=dtype)
        rows.append({"name": "matmul peak", "value": round(peak / 1e9, 1), "unit": "GFLOP/s", "device": device,
                     "note": "2048² fp32" if device == "cpu" else "8192² bf16"})  # fmt: skip
        if device == "cuda":
            gpu = torch.cuda.get_device_name(0)
            sheet = next((v for k, v in DATASHEET_BF16_DENSE.items() if k in gpu), None)
            if sheet:
                rows.append({"name": "datasheet bf16 dense", "value": sheet / 1e9, "unit": "GFLOP/s",
                             "device": device, "note": gpu})  # fmt: skip
        for preset in ("tiny",) if device == "cpu" else ("tiny", "small", "paper"):
            cfg = load_config(preset)
            m = cfg.model
            iters = 2 if device == "cpu" else 5
            amp = (
                torch.autocast("cuda", dtype=torch.bfloat16)
                if device == "cuda"
                else torch.autocast("cpu", enabled=False)
            )
            for label, static, batch in (("Ψ3d", True, cfg.psi3d.batch_size), ("Ψ", False, cfg.psi.batch_size)):
                f = psi_step_flops(m, batch, static, device)["total"]
                step = psi_step(m, batch, static, device)
                with amp:
                    s = _seconds(step, device, iters)
                rows += _rows(f"{label} step ({preset}, batch {batch})", f, s, peak, device, "forward + backward")
                rows.append({"name": f"{label} step ({preset}, batch {batch}): images/s", "value": round(batch / s, 2),
                             "unit": "images/s", "device": device,
                             "note": "bf16 autocast" if device == "cuda" else "fp32"})  # fmt: skip
            rows.append({"name": f"D step ({preset}, batch {cfg.psi.batch_size}): GFLOP", "device": device,
                         "value": round(discriminator_step_flops(m, cfg.psi.batch_size, device) / 1e9, 3),
                         "unit": "GFLOP", "note": "real + fake, backward, no R1"})  # fmt: skip
            k = cfg.pseudo_mv.views_per_frame
            f = converted_frame_flops(m, k, device=device)["total"]
            with amp:
                s = _seconds(converted_frame(m, k, device=device), device, iters)
            rows += _rows(f"converted frame ({preset}, K={k})", f, s, peak, device, "Ψ3d + K renders, no E_mot")
    return rows
