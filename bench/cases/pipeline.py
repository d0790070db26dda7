"""Speed of the pipeline's own loops (DESIGN.md §9): stage 3 conversion frames/s and views/s, and the
Zarr loader of the Ψ3d trainer against what one training step consumes, with peak memory.

No trained artifact is needed: freshly initialised Ψ3d and analyser of the tiny preset (speed does not
depend on the weights) and a store of random images with the tiny preset's shapes. Peak memory is the
process's peak resident set added during the case on CPU (``/proc/self/clear_refs`` resets the
high-water mark; where it cannot be reset, the figure is left out), ``torch.cuda.max_memory_allocated``
on a GPU. Figures belong to the machine in the results file; ratios are measured in one run.
Run: ``python bench/run.py --only pipeline``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models import torchvision_compat

torchvision_compat.install()  # idempotent: before timm/torchvision

from models import cameras as cams  # noqa: E402
from models.psi import build_psi  # noqa: E402
from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.training.optim import adam  # noqa: E402

PRESET = "tiny"
PRESETS_GPU = ("tiny", "small", "paper")  # stage 3's frames/s on a GPU at every preset (issue 15: ≥ 150 at paper, K=4)


def _status_mb(key: str) -> float | None:
    try:
        m = re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text())
        return int(m.group(1)) / 1024 if m else None
    except OSError:
        return None


def measure(fn, device: str):
    """``(result, peak MiB)``: CPU → peak RSS added while ``fn`` ran; CUDA → peak allocated by torch."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return out, torch.cuda.max_memory_allocated() / 2**20
    base = _status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return fn(), None
    out = fn()
    peak = _status_mb("VmHWM")
    return out, (None if peak is None or base is None else max(0.0, peak - base))


def _devices():
    yield "cpu"
    if torch.cuda.is_available():
        yield "cuda"


def _row(name, value, unit, device, note, peak=None):
    return {
        "name": name,
        "value": round(value, 2),
        "unit": unit,
        "peak_mem_mb": None if peak is None else round(peak, 1),
        "device": device,
        "note": note,
    }


def bench_stage3_conversion():
    """Stage 3 (pipeline_tasks.pseudo_mv.render_pseudo_views): Ψ3d on frames → K views per frame → E_mot on all."""
    from models.motion.synthetic_analyser import SyntheticAnalyser
    from pipeline_tasks.pseudo_mv import render_pseudo_views

    rows = []
    cases = [(device, preset) for device in _devices() for preset in (("tiny",) if device == "cpu" else PRESETS_GPU)]
    for device, preset in cases:
        cfg = load_config(preset)
        res, k, batch = cfg.model.psi.image_resolution, cfg.pseudo_mv.views_per_frame, cfg.pseudo_mv.frame_batch
        torch.manual_seed(0)
        psi3d = build_psi(cfg.model, static=True).to(device).eval()
        me = cfg.motion_encoder
        e_mot = (
            SyntheticAnalyser(
                motion_dim=cfg.model.psi.motion_dim,
                identity_dim=me.identity_dim,
                input_size=me.input_size,
                width=me.width,
                expression_names=[f"e{i}" for i in range(9)],
                gaze_names=["y", "p"],
            )
            .to(device)
            .eval()
        )
        t = 16 if device == "cpu" else 128
        frames = np.random.default_rng(0).integers(0, 256, (t, res, res, 3), dtype=np.uint8)
        yaw = torch.linspace(-0.3, 0.3, t)
        frame_cams = cams.orbit_label(yaw, torch.zeros(t), torch.full((t,), 4.2)).numpy()

        def run(n=t):
            return render_pseudo_views(
                psi3d, e_mot, "bench", frames[:n], frame_cams[:n], np.arange(n), k, 0, batch, torch.device(device)
            )

        run(batch)  # warm-up
        t0 = time.perf_counter()
        _, peak = measure(run, device)
        dt = time.perf_counter() - t0
        note = f"{t} frames {res}², K={k}, frame batch {batch}, fresh Ψ3d + analyser" + (
            ", bf16 autocast (as stage 3 runs)" if device == "cuda" else ""
        )
        rows.append(_row(f"stage 3 frames/s ({preset})", t / dt, "frames/s", device, note, peak))
        rows.append(_row(f"stage 3 views/s ({preset}, K={k})", t * k / dt, "views/s", device, note, peak))
    return rows


def _random_store(path: Path, n: int, views: int, res: int) -> Path:
    from storage_schemas import genhead_samples as gs

    rng = np.random.default_rng(0)
    gs.create(
        path,
        n_views=views,
        resolution=res,
        n_shape=16,
        n_expression=9,
        n_pose=3,
        n_gaze=2,
        n_z=24,
        shard_identities=32,
        attrs={"generator_backend": "bench-random"},
    )
    for s in range(0, n, 32):
        m = min(32, n - s)
        labels = cams.sample_cameras(m * views, torch.Generator().manual_seed(s))[0].reshape(m, views, 25).numpy()
        gs.append(
            path,
            {
                "images": rng.integers(0, 256, (m, views, res, res, 3), dtype=np.uint8),
                "alpha": rng.integers(0, 256, (m, views, res, res), dtype=np.uint8),
                "depth": rng.uniform(3.5, 4.8, (m, views, res, res)).astype(np.float16),
                "cameras": labels.astype(np.float32),
                "shape": np.zeros((m, 16), np.float32),
                "expression": np.zeros((m, 9), np.float32),
                "pose": np.zeros((m, 3), np.float32),
                "gaze": np.zeros((m, 2), np.float32),
                "z": np.zeros((m, 24), np.float32),
                "identity": np.arange(s, s + m, dtype=np.int64),
            },
        )
    gs.finalize(path)
    return path


def bench_loader_vs_trainer():
    """The Ψ3d trainer's GenHeadViews reading batches from a Zarr store (no in-memory cache) vs the samples/s
    one Ψ3d training step (forward, objective, backward, Adam) consumes. Ratio > 1: the loader keeps up."""
    from pipeline_tasks.data.genhead_views import GenHeadViews
    from pipeline_tasks.training.objective import PsiObjective

    cfg = load_config(PRESET)
    res, views, bsz = cfg.model.psi.image_resolution, cfg.genhead.views_per_identity, cfg.psi3d.batch_size
    tmp = Path(tempfile.mkdtemp(prefix="p4d-bench-"))
    rows = []
    try:
        store = _random_store(tmp / "store.zarr", 256, views, res)
        data = GenHeadViews(store, in_memory_limit_mb=0)  # every batch read from the store
        assert data._cache is None
        rng = np.random.default_rng(0)

        def load(n_batches=20):
            for _ in range(n_batches):
                ids = rng.choice(data.n, bsz, replace=False)
                p = rng.integers(0, views, bsz)
                data.pairs(ids, p, (p + 1) % views, torch.device("cpu"))
            return n_batches

        load(2)
        t0 = time.perf_counter()
        nb, peak = measure(load, "cpu")
        loader = nb * bsz / (time.perf_counter() - t0)
        rows.append(
            _row(
                f"Zarr loader samples/s (GenHeadViews from store, batch {bsz}, {res}²)",
                loader,
                "samples/s",
                "cpu",
                "random identities/views per batch, one chunk per identity",
                peak,
            )
        )
        for device in _devices():
            torch.manual_seed(0)
            psi = build_psi(cfg.model, static=True).to(device).train()
            objective = PsiObjective(cfg.model, cfg.psi3d.losses, lr=cfg.psi3d.lr).to(device)
            opt = adam([p for p in psi.parameters() if p.requires_grad], lr=cfg.psi3d.lr)  # the trainers' fused Adam
            src, tgt, alpha, _depth, c = data.pairs(
                np.arange(bsz), np.zeros(bsz, int), np.ones(bsz, int), torch.device(device)
            )
            real = torch.ones(bsz, dtype=torch.bool, device=device)

            def step(n=3):
                for _ in range(n):
                    out = psi.render(psi(src), c)
                    loss, _ = objective.generator_loss(out, tgt, alpha, c, real, 0)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if device == "cuda":
                    torch.cuda.synchronize()
                return n

            step(1)
            t0 = time.perf_counter()
            n, peak = measure(step, device)
            trainer = n * bsz / (time.perf_counter() - t0)
            rows.append(
                _row(
                    f"Ψ3d trainer consumes samples/s ({PRESET}, batch {bsz})",
                    trainer,
                    "samples/s",
                    device,
                    "forward + objective (L1+LPIPS) + backward + Adam, step 0 losses",
                    peak,
                )
            )
            rows.append(
                _row(
                    f"loader / trainer ratio ({device} trainer)",
                    loader / trainer,
                    "×",
                    device,
                    "> 1: the Zarr loader alone feeds the trainer; measured in this run",
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def bench_eval_benchmark_render():
    """Stage 5's on-demand ground truth: benchmark renders per second (procedural generator, CPU)."""
    from pipeline_tasks.eval.benchmark_set import BenchmarkSpec, build_benchmark

    cfg = load_config(PRESET)
    bench = build_benchmark(BenchmarkSpec.from_config(cfg))
    t0 = time.perf_counter()
    r, peak = measure(bench.render, "cpu")
    dt = time.perf_counter() - t0
    n = sum(v.shape[0] * (v.shape[1] if v.ndim == 5 else 1) for v in r.values())
    return [
        _row(
            f"eval benchmark ground-truth images/s ({cfg.eval.n_identities} ids × {len(bench.yaw_bins)} bins, "
            f"{bench.spec.resolution}²)",
            n / dt,
            "images/s",
            "cpu",
            f"{n} images in {dt:.1f} s",
            peak,
        )
    ]
