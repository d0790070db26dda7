"""Where a tiny training step spends its time: one Ψ3d step (forward by module, losses, backward, optimiser) under
``torch.profiler``, as milliseconds per step and shares of it.

Every top-level part of Ψ (encoders, transformer, tri-plane decoder, background, renderer, SR) is wrapped in a
``record_function`` label by forward hooks (the model code is untouched); the losses, the backward pass and the
optimiser step by the loop below. Backward is one phase: autograd runs it outside the modules' labels. Data
loading is not in it (``bench_loader_vs_trainer`` measures the loader against the step). CPU: tiny, fp32. On a GPU
(when one is present): tiny, small and paper under bf16 autocast (the trainers' default there), each phase's
boundaries synchronised so that its label's time is the GPU work inside it.
"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from models import torchvision_compat

torchvision_compat.install()

from models import cameras as cam  # noqa: E402
from models.genhead.ground_truth import GroundTruth, identity_ids  # noqa: E402
from models.psi import build_psi  # noqa: E402
from pipeline_tasks.config import load_config  # noqa: E402
from pipeline_tasks.training.objective import PsiObjective  # noqa: E402
from pipeline_tasks.training.optim import adam  # noqa: E402

PHASES = {
    "global_encoder": "encoders",
    "detail_encoder": "encoders",
    "patch_embed": "transformer",
    "blocks_neutral": "transformer",
    "blocks_motion": "transformer",
    "norm": "transformer",
    "upsampler": "transformer",
    "triplane_decoder": "tri-plane decoder",
    "background": "background",
    "renderer": "render (volume)",
    "superres": "super-resolution",
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _label(module: torch.nn.Module, name: str, device: str = "cpu") -> None:
    open_ = []

    def enter(m, i):
        _sync(device)
        open_.append(record_function(name).__enter__())

    def leave(m, i, o):
        _sync(device)
        open_.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


def psi3d_step(preset: str = "tiny", batch: int | None = None, lr: float | None = None, device: str = "cpu"):
    """``(psi, step)``: a fresh Ψ3d of ``preset`` and one training step of it on GenHead renders (forward, losses,
    backward, the trainers' fused Adam), its losses, backward and optimiser labelled for the profiler. Shared with
    bench/cases/scaling.py."""
    cfg = load_config(preset)
    torch.manual_seed(0)
    psi = build_psi(cfg.model, static=True).to(device).train()
    objective = PsiObjective(cfg.model, cfg.psi3d.losses, lr=cfg.psi3d.lr).to(device)
    opt = adam([p for p in psi.parameters() if p.requires_grad], lr=cfg.psi3d.lr if lr is None else lr)
    b, res = batch or cfg.psi3d.batch_size, cfg.model.psi.image_resolution
    gt = GroundTruth()
    ids = identity_ids(5, b)
    src = gt.render(ids, cam.orbit_label(torch.zeros(b), torch.zeros(b)), res).rgb.to(device)
    cams = cam.orbit_label(torch.linspace(-0.6, 0.6, b), torch.zeros(b))
    tgt = gt.render(ids, cams, res)
    tgt_rgb, tgt_alpha, cams = tgt.rgb.to(device), tgt.alpha.to(device), cams.to(device)
    real = torch.ones(b, dtype=torch.bool, device=device)
    amp = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def step():
        with amp:
            out = psi.render(psi(src), cams)
            with record_function("phase/losses"):
                loss, _ = objective.generator_loss(out, tgt_rgb, tgt_alpha, cams, real, step=0)
                _sync(device)
        opt.zero_grad(set_to_none=True)
        with record_function("phase/backward"):
            loss.backward()
            _sync(device)
        with record_function("phase/optimiser"):
            opt.step()
            _sync(device)

    return psi, step


def profile_step(preset: str = "tiny", steps: int = 3, device: str = "cpu") -> dict[str, float]:
    """Milliseconds per Ψ3d step by phase (the mean over ``steps`` profiled steps after one warm-up)."""
    psi, step = psi3d_step(preset, device=device)
    for child, phase in PHASES.items():
        _label(getattr(psi, child), f"phase/{phase}", device)

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("phase/step"):
                step()
                _sync(device)
    totals = {
        e.key[len("phase/") :]: e.cpu_time_total / 1e3 / steps
        for e in prof.key_averages()
        if e.key.startswith("phase/")
    }
    return totals


def bench_profile_step():
    rows = []
    cases = [("cpu", "tiny")] + ([("cuda", p) for p in ("tiny", "small", "paper")] if torch.cuda.is_available() else [])
    for device, preset in cases:
        ms = profile_step(preset, device=device)
        whole = ms.pop("step")
        batch = load_config(preset).psi3d.batch_size
        note = "profiled, fp32" if device == "cpu" else "profiled, bf16 autocast, phase boundaries synchronised"
        rows.append({"name": f"Ψ3d step ({preset}, batch {batch}): whole", "value": round(whole, 1), "unit": "ms",
                     "device": device, "note": note})  # fmt: skip
        for phase, t in sorted(ms.items(), key=lambda kv: -kv[1]):
            rows.append({"name": f"Ψ3d step ({preset}): {phase}", "value": round(t, 1), "unit": "ms",
                         "device": device, "note": f"{100 * t / whole:.0f}% of the step"})  # fmt: skip
        rest = whole - sum(ms.values())
        rows.append({"name": f"Ψ3d step ({preset}): other (glue, unlabelled ops)", "value": round(rest, 1),
                     "unit": "ms", "device": device, "note": f"{100 * rest / whole:.0f}% of the step"})  # fmt: skip
    return rows


if __name__ == "__main__":  # one profile as JSON, for bench/cases/speedup.py (run against another tree's models)
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(json.dumps(profile_step(args.preset, args.steps, args.device)))
