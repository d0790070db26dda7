"""Ψ's train-time validation (stage 4): held-out self-reenactment scored where expression lives,
beside the baselines Ψ must beat, on the same pairs.

Whole-frame PSNR barely sees expression, so besides PSNR every validation also reports, for pairs
of held-out videos whose cameras are ground truth (the synthetic videos):

* ``mouth_psnr`` / ``eyes_psnr``: PSNR inside the projected mouth and eye boxes
  (``models/genhead/regions.py``) of the target frame;
* ``change_correlation``: does Ψ(s, v_s, v_d) − Ψ(s, v_s, v_s) correlate, pixel by pixel, with
  truth(β_d) − truth(β_s) at the target camera? truth(β_d) is the target frame itself; truth(β_s) —
  the source's expression and gaze seen from the target camera — is rendered by the synthetic world
  from the video's sidecar (identity, per-frame labels).

Baselines on the same pairs: ``no_motion`` (Ψ driven by the source's own motion, v_d = v_s: what it
renders if reenactment did nothing; changes as Ψ trains), ``copy_source`` (the source frame) and
``psi3d_source`` (Ψ3d(source) at the target camera: what Ψ starts from). The last two are fixed
and measured once. For real videos (no ground-truth cameras or labels) only the whole-frame metrics
are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.genhead.ground_truth import GroundTruth
from models.genhead.procedural import ProceduralGenHead
from pipeline_tasks.data.video_sidecars import read_sidecar
from pipeline_tasks.eval.metrics import change_correlation, masked_psnr, psnr


@dataclass
class HeldOutPairs:
    """Fixed (source, driving, target) samples of held-out videos, on the CPU.

    ``regions``: ``{mouth, eyes}`` masks ``[N,1,H,W]`` of the target frames (None when a camera is
    not ground truth); ``truth_source_expression``: the truth with the source's expression and gaze
    at the target camera ``[N,3,H,W]`` (None when not every video has a readable sidecar)."""

    source: torch.Tensor
    driving: torch.Tensor
    target: torch.Tensor
    cameras: torch.Tensor
    motion_source: torch.Tensor
    motion_driving: torch.Tensor
    regions: dict[str, torch.Tensor] | None = None
    truth_source_expression: torch.Tensor | None = None
    note: str = ""  # why region / change metrics are missing, if they are

    @property
    def n(self) -> int:
        return len(self.source)


def truth_with_labels_of(
    attrs: dict, label_frames: np.ndarray, cameras: torch.Tensor, resolution: int, sharpness: float = 200.0
) -> torch.Tensor:
    """The synthetic world's render of a video's identity with the expression and gaze of its frames
    ``label_frames`` (indices into the *stored* frames) at head-relative ``cameras [N,25]`` (pose 0):
    ``[N,3,H,W]`` in [−1, 1]. With the frames' own cameras this reproduces the stored frames."""
    side = read_sidecar(Path(attrs["sidecar"]))
    src_index = np.asarray(attrs["frame_indices"])[np.asarray(label_frames)]  # stored frame → source frame
    expression = torch.tensor(side["expression"], dtype=torch.float32)[src_index]
    gaze = torch.tensor(side["gaze"], dtype=torch.float32)[src_index]
    gt = GroundTruth(ProceduralGenHead(sharpness=sharpness))
    n = len(src_index)
    return gt.render([int(side["identity"])] * n, cameras, resolution, expression=expression, gaze=gaze).rgb


def _scores(pred: torch.Tensor, pairs: HeldOutPairs) -> dict[str, torch.Tensor]:
    out = {"psnr": psnr(pred, pairs.target)}
    if pairs.regions is not None:
        for name, mask in pairs.regions.items():
            out[f"{name}_psnr"] = masked_psnr(pred, pairs.target, mask)
    return out


def _mean(scores: dict[str, torch.Tensor], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": float(torch.nanmean(v.float())) for k, v in scores.items()}


@torch.no_grad()
def _render(model, pairs: HeldOutPairs, device, batch: int, motion: str | None) -> torch.Tensor:
    """``model``'s images of every pair at the target camera; ``motion``: "driving", "source" (v_d = v_s)
    or None (a static Ψ3d)."""
    was_training = model.training
    model.eval()
    outs = []
    for s in range(0, pairs.n, batch):
        sl = slice(s, s + batch)
        src = pairs.source[sl].to(device)
        if motion is None:
            planes = model(src)
        else:
            m_s = pairs.motion_source[sl].to(device)
            planes = model(src, m_s, pairs.motion_driving[sl].to(device) if motion == "driving" else m_s)
        outs.append(
            model.render(planes, pairs.cameras[sl].to(device), perturb=False)["image"].float().clamp(-1, 1).cpu()
        )
    model.train(was_training)
    return torch.cat(outs)


def baseline_scores(pairs: HeldOutPairs, psi3d, device, batch: int = 8) -> dict[str, float]:
    """The fixed baselines of ``pairs``: ``copy_source_*`` and ``psi3d_source_*`` (Ψ3d(source) at the target camera)."""
    out = _mean(_scores(pairs.source, pairs), "copy_source_")
    if psi3d is not None:
        out.update(_mean(_scores(_render(psi3d, pairs, device, batch, None), pairs), "psi3d_source_"))
    return out


def reenactment_scores(psi, pairs: HeldOutPairs, device, batch: int = 8) -> dict[str, float]:
    """Ψ's metrics on ``pairs`` and its no-motion baseline (``no_motion_*``), plus the change correlation."""
    pred = _render(psi, pairs, device, batch, "driving")
    still = _render(psi, pairs, device, batch, "source")
    out = {**_mean(_scores(pred, pairs)), **_mean(_scores(still, pairs), "no_motion_")}
    if pairs.truth_source_expression is not None:
        out["change_correlation"] = float(
            change_correlation(pred, still, pairs.target, pairs.truth_source_expression).mean()
        )
    return out


def margins(scores: dict[str, float], baselines: dict[str, float]) -> dict[str, float]:
    """Ψ minus each baseline, for every metric both have (``<metric>_margin_vs_<baseline>``)."""
    out = {}
    for base in ("no_motion", "copy_source", "psi3d_source"):
        for metric in ("psnr", "mouth_psnr", "eyes_psnr"):
            ref = scores.get(f"{base}_{metric}", baselines.get(f"{base}_{metric}"))
            if metric in scores and ref is not None:
                out[f"{metric}_margin_vs_{base}"] = scores[metric] - ref
    return out
