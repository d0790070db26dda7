"""Stage 5's instruments: the benchmark (rendered once per process), the pose probe on the evaluation
analyser's features, and the scorer that reads every prediction against its truth (PSNR, SSIM, LPIPS, region
PSNR, expression / gaze / pose error, identity similarity)."""

from __future__ import annotations

import torch

from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.eval.benchmark_set import BenchmarkSet, BenchmarkSpec, build_benchmark, probe_set
from pipeline_tasks.eval.metrics import masked_psnr, psnr, ssim

# ---------------------------------------------------------------- benchmark cache (one render per process)
_BENCHMARKS: dict[str, BenchmarkSet] = {}


_PROBES: dict[tuple, tuple] = {}


def get_benchmark(cfg: PipelineConfig) -> BenchmarkSet:
    """The benchmark of ``cfg`` (renders cached per process by digest: the pipeline evaluates twice)."""
    bench = build_benchmark(BenchmarkSpec.from_config(cfg))
    return _BENCHMARKS.setdefault(bench.digest(), bench)


def _probe_images(cfg: PipelineConfig):
    e = cfg.eval
    key = (e.seed + 1, e.probe_identities, e.probe_views, cfg.model.psi.image_resolution)
    if key not in _PROBES:
        _PROBES[key] = probe_set(*key)
    return _PROBES[key]


class PoseProbe:
    """Ridge regression from analyser features to camera (yaw, pitch) in degrees, relative to the head."""

    def __init__(self, lam: float = 1.0):
        self.lam = lam

    def fit(self, feats: torch.Tensor, yp_deg: torch.Tensor) -> "PoseProbe":
        f = feats.double()
        self.mu, self.sd = f.mean(0), f.std(0) + 1e-6
        x = torch.cat([(f - self.mu) / self.sd, torch.ones(len(f), 1, dtype=f.dtype)], 1)
        reg = self.lam * torch.eye(x.shape[1], dtype=f.dtype)
        reg[-1, -1] = 0
        self.w = torch.linalg.solve(x.T @ x + reg, x.T @ yp_deg.double())
        return self

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        f = feats.double()
        x = torch.cat([(f - self.mu) / self.sd, torch.ones(len(f), 1, dtype=f.dtype)], 1)
        return (x @ self.w).float()


def fit_pose_probe(analyser, cfg: PipelineConfig, device) -> tuple[PoseProbe, dict[str, float]]:
    """Fit on probe renders; report its error on a quarter of the probe identities held out, then refit on all."""
    imgs, yp, owner = _probe_images(cfg)
    with torch.no_grad():
        feats = torch.cat([analyser.features(imgs[s : s + 64].to(device)).cpu() for s in range(0, len(imgs), 64)])
    yp_deg = torch.rad2deg(yp)
    n_id = int(owner.max()) + 1
    held = owner >= n_id - max(1, n_id // 4)
    probe = PoseProbe().fit(feats[~held], yp_deg[~held])
    err = (probe.predict(feats[held]) - yp_deg[held]).norm(dim=1)
    info = {"pose_probe_heldout_error_deg": float(err.mean()), "pose_probe_images": int(len(imgs))}
    return PoseProbe().fit(feats, yp_deg), info


# ---------------------------------------------------------------- metrics
class Scorer:
    """Per-image metrics of predictions against the truth (all instruments frozen)."""

    def __init__(self, analyser, probe: PoseProbe, lpips_net: str, device):
        from models.losses import LPIPSLoss

        self.analyser, self.probe, self.device = analyser, probe, device
        self.lpips = LPIPSLoss(lpips_net).to(device)

    @torch.no_grad()
    def analyse(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the instruments read from images: expression, gaze, (yaw, pitch) in degrees, identity."""
        x = images.to(self.device).float()
        f = self.analyser.features(x)
        pred_std = self.analyser.motion_head(self.analyser.motion_mlp(f))
        pred = self.analyser.unstandardise(pred_std)
        ident = torch.nn.functional.normalize(self.analyser.identity_mlp(f), dim=-1)
        return {
            "expression": pred["expression"].cpu(),
            "gaze": pred["gaze"].cpu(),
            "pose_deg": self.probe.predict(f.cpu()),
            "identity": ident.cpu(),
        }

    @torch.no_grad()
    def score(
        self,
        pred: torch.Tensor,
        truth: torch.Tensor,
        expression: torch.Tensor,
        gaze: torch.Tensor,
        yaw_pitch_deg: torch.Tensor,
        truth_read: dict | None = None,
        regions: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``pred``/``truth`` ``[M,3,H,W]``; known ``expression [M,9]``, ``gaze [M,2]`` (rad), ``yaw_pitch_deg [M,2]``;
        ``regions``: ``{name: [M,1,H,W]}`` masks (models/genhead/regions.py) → ``<name>_psnr``."""
        pred = pred.float().clamp(-1, 1)
        truth = truth.float()
        a = self.analyse(pred)
        t = truth_read or self.analyse(truth)
        lp = torch.cat(
            [
                self.lpips.lpips(pred[s : s + 32].to(self.device), truth[s : s + 32].to(self.device), normalize=False)
                .reshape(-1)
                .cpu()
                for s in range(0, len(pred), 32)
            ]
        )
        region_psnr = {f"{k}_psnr": masked_psnr(pred, truth, m) for k, m in (regions or {}).items()}
        return {
            "psnr": psnr(pred, truth),
            **region_psnr,
            "ssim": ssim(pred, truth),
            "lpips": lp,
            "expression_error": (a["expression"] - expression).abs().mean(1),
            "gaze_error_deg": torch.rad2deg((a["gaze"] - gaze).abs()).mean(1),
            "pose_error_deg": (a["pose_deg"] - yaw_pitch_deg).norm(dim=1),
            "identity_similarity": (a["identity"] * t["identity"]).sum(1),
        }
