"""Throughput of the procedural GenHead on CPU (images/s at 64² and 128², 4 views per identity)."""

from __future__ import annotations

import time

import torch

from models import cameras as cam
from models.genhead import params as P
from models.genhead.procedural import ProceduralGenHead


def _images_per_s(res: int, n_ids: int, views: int = 4, repeats: int = 2) -> float:
    gen = ProceduralGenHead()
    g = torch.Generator().manual_seed(0)
    p = P.sample_params(n_ids, g)
    cams = cam.sample_cameras(n_ids * views, g)[0].reshape(n_ids, views, 25)
    gen.render_params({k: v[:1] for k, v in p.items()}, cams[:1], 16)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        gen.render_params(p, cams, res)
        best = min(best, time.perf_counter() - t)
    return n_ids * views / best


def bench_genhead_cpu() -> list[dict]:
    note = "procedural GenHead, 1 torch thread (generator default), random identities/expressions/cameras, best of 2"
    return [
        {
            "name": f"genhead images/s ({r}²)",
            "value": round(_images_per_s(r, n), 2),
            "unit": "images/s",
            "device": "cpu",
            "note": note,
        }
        for r, n in ((64, 16), (128, 4))
    ]
