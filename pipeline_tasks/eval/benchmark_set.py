"""The held-out benchmark of stage 5: a fixed, versioned set of synthetic questions with known answers.

Nothing is stored: the set is a pure function of (``BENCHMARK_VERSION``, ``eval.seed``,
``eval.n_identities``, the yaw bins, the image size), rendered on demand with the procedural
generator, and its :meth:`BenchmarkSet.digest` (a SHA-256 over every parameter) is recorded in each
``eval`` artifact so two evaluations can be checked to have answered the same questions.
Change what the set contains → bump ``BENCHMARK_VERSION``.

Per benchmark identity A_i (ids ``identity_ids(eval.seed, n)``: a base seed no training stage uses,
so disjoint from stage 1's and the videos' identities):

* **source** Î_s: A_i at a frame of A_i's *own* talking trajectory (expression + gaze), head pose 0,
  frontal camera (yaw 0, pitch 0, radius 4.2) — a portrait as a user would give one.
* **driving expression** β_d, gaze g_d: the most expressive frames of the talking trajectory of
  *another* identity B_i = A_{i+1 mod n} (``models.genhead.motion.talking_trajectory``, the same
  motion model the synthetic videos use; one of the top-quartile frames by Σβ, chosen by seed). The
  expression comes from B's video, never from A's.
* **driving images** at a per-identity camera θ_d (yaw U(±driving_yaw_max), pitch U(±driving_pitch_max)):
  ``driving_self`` = A_i with (β_d, g_d) — self-reenactment input, and its own ground truth at θ_d;
  ``driving_cross`` = B_i with (β_d, g_d) — cross-identity reenactment input.
* **targets** at the yaw bins (pitch 0, radius 4.2): ``nvs_targets`` = A_i with the source
  expression (what Ψ3d must produce from Î_s), ``reenact_targets`` = A_i with (β_d, g_d) (what Ψ
  must produce from Î_s driven by either driving image).

Head pose γ is 0 everywhere: in this method head pose is the camera, so the yaw bin *is* the pose
to be reproduced.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from models import cameras as cam
from models.genhead import params as P
from models.genhead.ground_truth import GroundTruth, identity_ids
from models.genhead.motion import talking_trajectory

BENCHMARK_VERSION = 1
TRAJECTORY_FPS = 25.0


def _gen(*parts: int) -> torch.Generator:
    h = hashlib.sha256(":".join(str(int(p)) for p in parts).encode()).hexdigest()
    return torch.Generator().manual_seed(int(h[:15], 16))


def yaw_bin_cameras(yaw_bins_degrees: list[float], radius: float = cam.DEFAULT_RADIUS) -> torch.Tensor:
    """``[V, 25]`` cameras at the yaw bins, pitch 0, looking at the head centre."""
    yaw = torch.tensor([math.radians(y) for y in yaw_bins_degrees], dtype=torch.float32)
    return cam.orbit_label(yaw, torch.zeros_like(yaw), torch.full_like(yaw, radius))


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything the set depends on (what its digest covers, with the parameters it yields)."""

    seed: int
    n_identities: int
    resolution: int
    yaw_bins_degrees: tuple[float, ...]
    trajectory_frames: int = 50
    driving_yaw_max_degrees: float = 25.0
    driving_pitch_max_degrees: float = 10.0
    version: int = BENCHMARK_VERSION

    @classmethod
    def from_config(cls, cfg) -> "BenchmarkSpec":
        """From a PipelineConfig: the eval section + the model's image size."""
        e = cfg.eval
        return cls(
            seed=e.seed,
            n_identities=e.n_identities,
            resolution=cfg.model.psi.image_resolution,
            yaw_bins_degrees=tuple(float(y) for y in e.yaw_bins_degrees),
            trajectory_frames=e.trajectory_frames,
            driving_yaw_max_degrees=e.driving_yaw_max_degrees,
            driving_pitch_max_degrees=e.driving_pitch_max_degrees,
        )


@dataclass
class BenchmarkSet:
    """The parameters of every image of the set (``[N, ·]`` per identity, ``[V, ·]`` per yaw bin)."""

    spec: BenchmarkSpec
    identities: list[int]
    drivers: list[int]
    source_frame: np.ndarray  # [N] frame of A's trajectory used as the source
    driving_frame: np.ndarray  # [N] frame of B's trajectory giving the driving expression
    source_expression: torch.Tensor  # [N, 9]
    source_gaze: torch.Tensor  # [N, 2]
    driving_expression: torch.Tensor  # [N, 9]
    driving_gaze: torch.Tensor  # [N, 2]
    source_cameras: torch.Tensor  # [N, 25]
    driving_cameras: torch.Tensor  # [N, 25]
    driving_yaw_pitch: torch.Tensor  # [N, 2] radians
    target_cameras: torch.Tensor  # [V, 25]
    _renders: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.identities)

    @property
    def yaw_bins(self) -> list[float]:
        return list(self.spec.yaw_bins_degrees)

    def digest(self) -> str:
        """SHA-256 of the spec and every parameter array: equal digests = the same questions."""
        h = hashlib.sha256(repr(self.spec).encode())
        h.update(np.asarray(self.identities, np.int64).tobytes())
        h.update(np.asarray(self.drivers, np.int64).tobytes())
        for t in (self.source_frame, self.driving_frame):
            h.update(np.asarray(t, np.int64).tobytes())
        for t in (
            self.source_expression,
            self.source_gaze,
            self.driving_expression,
            self.driving_gaze,
            self.source_cameras,
            self.driving_cameras,
            self.target_cameras,
        ):
            h.update(np.round(t.numpy().astype(np.float64), 6).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """JSON-able description (stored as ``benchmark.json`` in each eval artifact)."""
        return {
            "version": self.spec.version,
            "digest": self.digest(),
            "seed": self.spec.seed,
            "resolution": self.spec.resolution,
            "yaw_bins_degrees": self.yaw_bins,
            "identities": self.identities,
            "drivers": self.drivers,
            "source_frame": self.source_frame.tolist(),
            "driving_frame": self.driving_frame.tolist(),
            "source_expression": self.source_expression.tolist(),
            "driving_expression": self.driving_expression.tolist(),
            "driving_gaze": self.driving_gaze.tolist(),
            "driving_yaw_pitch_degrees": np.degrees(self.driving_yaw_pitch.numpy()).round(3).tolist(),
            "expression_names": list(P.EXPRESSION_NAMES),
            "how": "see pipeline_tasks/eval/benchmark_set.py",
        }

    # ---- rendering (on demand, cached per set) -------------------------------------------
    def render(self, gt: GroundTruth | None = None, batch: int = 32) -> dict[str, torch.Tensor]:
        """Ground-truth images in [−1, 1]: ``source``, ``driving_self``, ``driving_cross`` ``[N,3,H,W]``,
        ``nvs_targets``, ``reenact_targets`` ``[N,V,3,H,W]``, the geometry of the novel-view
        targets ``nvs_alpha``, ``nvs_depth`` and the alpha of the reenactment targets ``reenact_alpha``
        ``[N,V,1,H,W]``. Rendered once per set object."""
        if self._renders:
            return self._renders
        gt = gt or GroundTruth()
        res, n, v = self.spec.resolution, self.n, len(self.yaw_bins)
        tgt = self.target_cameras[None].expand(n, v, 25)

        def run(ids, cams, expr, gaze, geometry: bool = False):
            out = []
            per = max(1, batch // (cams.shape[1] if cams.ndim == 3 else 1))
            for s in range(0, len(ids), per):
                sl = slice(s, s + per)
                out.append(gt.render(list(ids[sl]), cams[sl], res, expression=expr[sl], gaze=gaze[sl]))
            rgb = torch.cat([o.rgb for o in out]).clamp(-1, 1)
            if geometry:
                return rgb, torch.cat([o.alpha for o in out]), torch.cat([o.depth for o in out])
            return rgb

        with torch.no_grad():
            nvs, nvs_alpha, nvs_depth = run(
                self.identities, tgt, self.source_expression, self.source_gaze, geometry=True
            )
            reenact, reenact_alpha, _ = run(
                self.identities, tgt, self.driving_expression, self.driving_gaze, geometry=True
            )
            self._renders = {
                "source": run(self.identities, self.source_cameras, self.source_expression, self.source_gaze),
                "driving_self": run(self.identities, self.driving_cameras, self.driving_expression, self.driving_gaze),
                "driving_cross": run(self.drivers, self.driving_cameras, self.driving_expression, self.driving_gaze),
                "nvs_targets": nvs,
                "nvs_alpha": nvs_alpha,
                "nvs_depth": nvs_depth,
                "reenact_targets": reenact,
                "reenact_alpha": reenact_alpha,
            }
        return self._renders


def build_benchmark(spec: BenchmarkSpec) -> BenchmarkSet:
    """The set for ``spec`` (deterministic: no global RNG is read or advanced)."""
    n = spec.n_identities
    if n < 2:
        raise ValueError(f"eval.n_identities must be ≥ 2 (cross-identity reenactment needs another identity), got {n}")
    if not spec.yaw_bins_degrees:
        raise ValueError("eval.yaw_bins_degrees is empty")
    ids = identity_ids(spec.seed, n)
    drivers = [ids[(i + 1) % n] for i in range(n)]
    trajs = {}
    for i in ids:  # each benchmark identity's own talking trajectory (its "video")
        trajs[i] = talking_trajectory(spec.trajectory_frames, TRAJECTORY_FPS, _gen(spec.version, spec.seed, i, 1))
    src_f, drv_f, src_e, src_g, drv_e, drv_g, yp = [], [], [], [], [], [], []
    for k, (a, b) in enumerate(zip(ids, drivers)):
        g = _gen(spec.version, spec.seed, a, 2)
        fs = int(torch.randint(0, spec.trajectory_frames, (1,), generator=g))
        strength = trajs[b]["expression"].sum(1)
        top = torch.argsort(strength, descending=True)[: max(1, spec.trajectory_frames // 4)]
        fd = int(top[int(torch.randint(0, len(top), (1,), generator=g))])
        src_f.append(fs)
        drv_f.append(fd)
        src_e.append(trajs[a]["expression"][fs])
        src_g.append(trajs[a]["gaze"][fs])
        drv_e.append(trajs[b]["expression"][fd])
        drv_g.append(trajs[b]["gaze"][fd])
        u = torch.rand(2, generator=g) * 2 - 1
        yp.append(
            torch.stack(
                [u[0] * math.radians(spec.driving_yaw_max_degrees), u[1] * math.radians(spec.driving_pitch_max_degrees)]
            )
        )
    yp_t = torch.stack(yp)
    zeros = torch.zeros(n)
    return BenchmarkSet(
        spec=spec,
        identities=ids,
        drivers=drivers,
        source_frame=np.array(src_f),
        driving_frame=np.array(drv_f),
        source_expression=torch.stack(src_e),
        source_gaze=torch.stack(src_g),
        driving_expression=torch.stack(drv_e),
        driving_gaze=torch.stack(drv_g),
        source_cameras=cam.orbit_label(zeros, zeros, torch.full((n,), cam.DEFAULT_RADIUS)),
        driving_cameras=cam.orbit_label(yp_t[:, 0], yp_t[:, 1], torch.full((n,), cam.DEFAULT_RADIUS)),
        driving_yaw_pitch=yp_t,
        target_cameras=yaw_bin_cameras(list(spec.yaw_bins_degrees)),
    )


def probe_set(seed: int, n_identities: int, views: int, resolution: int, gt: GroundTruth | None = None):
    """Images of *other* identities (base seed ``seed``) at random cameras with known yaw/pitch, random
    expressions, head pose 0: what the evaluator's pose probe is fitted on. Returns
    (images ``[n·views,3,H,W]``, yaw/pitch ``[n·views, 2]`` radians, identity index ``[n·views]``)."""
    gt = gt or GroundTruth()
    ids = identity_ids(seed, n_identities)
    g = _gen(BENCHMARK_VERSION, seed, 3)
    labels, ypr = cam.sample_cameras(
        n_identities * views,
        g,
        cam.CameraRanges(yaw=math.radians(50), pitch=math.radians(20), radius_min=4.2, radius_max=4.2),
    )
    expr = P.sample_expression(n_identities, g)
    gaze = (torch.rand(n_identities, 2, generator=g) * 2 - 1) * P.GAZE_RANGE * 0.6
    imgs = []
    with torch.no_grad():
        for s in range(0, n_identities, 8):
            sl = slice(s, s + 8)
            m = len(ids[sl])
            imgs.append(
                gt.render(
                    ids[sl], labels.reshape(n_identities, views, 25)[sl], resolution, expression=expr[sl], gaze=gaze[sl]
                ).rgb.reshape(m * views, 3, resolution, resolution)
            )
    owner = torch.arange(n_identities).repeat_interleave(views)
    return torch.cat(imgs).clamp(-1, 1), ypr[:, :2], owner


@dataclass
class NovelViewSet:
    """Identities rendered (head pose 0) from the frontal source camera and at every yaw bin, with
    the true alpha and depth: what Ψ3d's per-bin validation and geometry metrics are measured on."""

    yaw_bins: list[float]
    source: torch.Tensor  # [n, 3, H, W] in [−1, 1]
    targets: torch.Tensor  # [n, V, 3, H, W]
    alpha: torch.Tensor  # [n, V, 1, H, W] in [0, 1]
    depth: torch.Tensor  # [n, V, 1, H, W] ray distance
    cameras: torch.Tensor  # [V, 25] head-relative
    # the same identities with a neutral face (expression 0, same gaze): the reference of the expression change
    neutral_source: torch.Tensor | None = None  # [n, 3, H, W]
    neutral_targets: torch.Tensor | None = None  # [n, V, 3, H, W]
    expressive: torch.Tensor | None = None  # [n] bool: the identity's expression is not neutral

    @property
    def n(self) -> int:
        return len(self.source)


def render_novel_view_set(
    shape, expression, gaze, z, yaw_bins_degrees, resolution: int, generator=None, batch: int = 8, neutral: bool = True
) -> NovelViewSet:
    """Render identities given by their labels (``[n, ·]`` each, e.g. held-out rows of a
    ``genhead_samples`` store) at the frontal camera and at ``yaw_bins_degrees``, head pose 0;
    ``neutral``: also with expression 0 (same gaze), so that a model's expression change can be scored."""
    from models.genhead.procedural import ProceduralGenHead

    gen = generator or ProceduralGenHead()
    shape, expression, gaze, z = (
        torch.as_tensor(np.asarray(t), dtype=torch.float32) for t in (shape, expression, gaze, z)
    )
    n = len(shape)
    bins = list(yaw_bins_degrees)
    cams = torch.cat([yaw_bin_cameras([0.0]), yaw_bin_cameras(bins)])  # [1 + V, 25]: source, then the bins

    def render(expr):
        outs = []
        with torch.no_grad():
            for s in range(0, n, batch):
                sl = slice(s, s + batch)
                m = len(shape[sl])
                outs.append(
                    gen.render(
                        shape[sl],
                        expr[sl],
                        torch.zeros(m, 3),
                        gaze[sl],
                        z[sl],
                        cams[None].expand(m, -1, -1),
                        resolution,
                    )
                )
        return outs

    outs = render(expression)
    rgb = torch.cat([o.rgb for o in outs]).clamp(-1, 1)
    alpha = torch.cat([o.alpha for o in outs])
    depth = torch.cat([o.depth for o in outs])
    views = NovelViewSet(bins, rgb[:, 0], rgb[:, 1:], alpha[:, 1:], depth[:, 1:], cams[1:])
    if neutral:
        flat = torch.cat([o.rgb for o in render(torch.zeros_like(expression))]).clamp(-1, 1)
        views.neutral_source, views.neutral_targets = flat[:, 0], flat[:, 1:]
        views.expressive = expression.abs().sum(1) > 0
    return views
