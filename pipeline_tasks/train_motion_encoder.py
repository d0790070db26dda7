"""Stage 2b: the motion encoder E_mot (DESIGN.md §1).

Backend ``synthetic``: train the synthetic analyser (models/motion/synthetic_analyser.py) on an
``analyser_samples`` artifact (stage 1b: several independently drawn expressions, poses and gazes
per identity, so expression cannot be read off identity; any store of the ``genhead_samples``
schema works). One step: ``batch_size/2`` training samples, each with a partner — another
sample of the same identity (another expression, pose and camera) where the store has one, else
another view of the same sample — a brightness jitter, a crop jitter (shift/zoom; with the lr schedule
it lifted held-out mean R² 0.55 → 0.69 on the learn store, which the analyser otherwise memorises) and a
left–right mirror (labels mirrored: blink L↔R, eye yaw negated), loss = MSE on standardised expression β + gaze, plus
``identity_weight`` × a supervised-contrastive loss on identity labels (partners are positives). Adam with a
linear warm-up then cosine decay (without the warm-up, at 2e-3, the CNN sat on the "predict the mean"
plateau: held-out R² 0.00 after 1000 learn-preset steps), EMA of weights; resumable from checkpoints in the
artifact's temporary folder (``checkpoints/``), TensorBoard events + scalars.jsonl/csv (``logs/``).

Held out: the samples of the last ``val_identities`` identities of the store (by identity label,
in store order). Reported: R² per expression parameter and gaze angle (all views of the held-out
samples), identity retrieval top-1 (nearest other held-out image by cosine has the same
identity) with its chance level, and a linear-probe R² of the embedding itself (ridge regression
fitted on training samples) — the number that matters for Ψ, since Ψ only sees the embedding.
What the *motion* embedding carries besides motion: identity top-1 retrieval from it across
different samples (views of one sample excluded), the share of its variance between identity means
(η², beside its permutation chance level), and the share a ridge fit from the head-relative camera
(pose) explains, beside the share the expression/gaze labels explain. Each R² has a 95% interval
from resampling held-out identities.

Backend ``pdfgc``: nothing is trained; the stage loads the user's PD-FGC weights (a clear error if
absent) and publishes them as the same kind of artifact, so downstream code always calls
:func:`load_motion_encoder_artifact`.

Artifact ``motion_encoder/<version>/``: ``checkpoint.pt`` (EMA weights + constructor kwargs,
``models.motion.load_motion_encoder`` reads it), ``metrics.json``, ``curves.png``,
``samples/val_predictions.png``, ``logs/`` (events, ``scalars.jsonl``, ``scalars.csv``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from models.motion import build_motion_encoder, freeze, save_motion_encoder
from models.motion import load_motion_encoder as _load_from_path
from models.motion.base import MotionEncoder
from models.motion.files import CHECKPOINT_NAME
from models.motion.synthetic_analyser import SyntheticAnalyser, supervised_contrastive_loss
from pipeline_tasks import stages
from pipeline_tasks.config import PipelineConfig, cosine_lr
from pipeline_tasks.data.images import to_model_images
from pipeline_tasks.data.labelled_views import LabelledViews
from pipeline_tasks.stage import StageSpec, run_once
from pipeline_tasks.training.device import resolve_device
from pipeline_tasks.training.grid import save_image_grid
from pipeline_tasks.training.logs import plot_curves
from pipeline_tasks.training.trainer import Trainer
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "motion_encoder"
SCHEMA_VERSION = 1


class TrainingInterrupted(InterruptedError):
    """Training stopped on purpose before its last step (``stop_after``); the run is resumable."""


# ---------------------------------------------------------------- data


# ---------------------------------------------------------------- metrics
def r2_scores(pred: np.ndarray, true: np.ndarray) -> list[float | None]:
    """Coefficient of determination per column; None where the truth is constant (undefined)."""
    out: list[float | None] = []
    for j in range(true.shape[1]):
        ss_tot = float(((true[:, j] - true[:, j].mean()) ** 2).sum())
        ss_res = float(((true[:, j] - pred[:, j]) ** 2).sum())
        out.append(None if ss_tot <= 1e-12 else 1.0 - ss_res / ss_tot)
    return out


def retrieval_top1(
    emb: torch.Tensor, labels: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[float | None, float | None]:
    """Top-1 accuracy of the nearest other item by cosine (queries that have a positive) and chance level.

    ``exclude``: a group per item (e.g. the sample an image is a view of); items of the query's own
    group are never candidates, so "same identity" must be found across different samples."""
    labels_t = torch.as_tensor(labels)
    sim = F.normalize(emb.float(), dim=-1) @ F.normalize(emb.float(), dim=-1).t()
    own = torch.eye(len(labels_t), dtype=torch.bool)
    if exclude is not None:
        ex = torch.as_tensor(exclude)
        own |= ex[:, None] == ex[None, :]
    sim.masked_fill_(own, -float("inf"))
    same = labels_t[:, None] == labels_t[None, :]
    same &= ~own
    has = same.any(1)
    if not bool(has.any()):
        return None, None
    nn_idx = sim.argmax(1)
    hit = same[torch.arange(len(labels_t)), nn_idx]
    chance = same.sum(1).float() / (~own).sum(1).clamp_min(1).float()
    return float(hit[has].float().mean()), float(chance[has].mean())


def variance_explained_by_groups(x: torch.Tensor, groups: np.ndarray) -> float:
    """η²: the share of the total variance of ``x [N, D]`` that lies between the group means."""
    x = x.double()
    mu = x.mean(0)
    g = torch.as_tensor(np.unique(groups, return_inverse=True)[1])
    n_g = torch.bincount(g).double()
    means = torch.zeros(len(n_g), x.shape[1], dtype=x.dtype).index_add_(0, g, x) / n_g[:, None]
    between = (n_g[:, None] * (means - mu) ** 2).sum()
    total = ((x - mu) ** 2).sum().clamp_min(1e-12)
    return float(between / total)


def permuted_groups(groups: np.ndarray, units: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``groups`` shuffled among whole ``units`` (e.g. identities among samples, keeping a sample's
    views together): the null of "the grouping carries nothing" for :func:`variance_explained_by_groups`."""
    uniq, first, inv = np.unique(units, return_index=True, return_inverse=True)
    return rng.permutation(groups[first])[inv]


def explained_variance(pred: torch.Tensor, true: torch.Tensor) -> float:
    """1 − Σ residual² / Σ (true − mean)² over all columns (a variance-weighted R² of a vector)."""
    true, pred = true.double(), pred.double()
    return float(1.0 - ((true - pred) ** 2).sum() / ((true - true.mean(0)) ** 2).sum().clamp_min(1e-12))


def pose_features(cameras: np.ndarray) -> torch.Tensor:
    """What a head-relative camera says about pose: its cam2world rotation and position ``[N, 12]``."""
    c2w = torch.as_tensor(np.asarray(cameras, np.float32))[..., :16].reshape(-1, 4, 4)
    return c2w[:, :3, :4].reshape(-1, 12)


def group_resamples(groups: np.ndarray, reps: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Row indices of ``reps`` bootstrap draws, each resampling whole groups (identities) with replacement."""
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(uniq))]
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        yield np.concatenate([members[k] for k in rng.integers(0, len(uniq), len(uniq))])


def bootstrap_r2_ci(
    pred: np.ndarray, true: np.ndarray, groups: np.ndarray, reps: int = 200, seed: int = 0
) -> list[list[float] | None]:
    """95% interval of each column's R², resampling whole groups (identities) with replacement."""
    draws = []
    for rows in group_resamples(groups, reps, seed):
        draws.append([np.nan if v is None else v for v in r2_scores(pred[rows], true[rows])])
    arr = np.asarray(draws, float)
    out: list[list[float] | None] = []
    for j in range(true.shape[1]):
        col = arr[:, j][np.isfinite(arr[:, j])]
        out.append(None if len(col) < reps // 2 else [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))])
    return out


def _ridge_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, lam: float = 1e-2) -> torch.Tensor:
    """Ridge fit on standardised features. A feature constant in training (a dead unit) is dropped, not divided
    by ~0: its rounding noise would otherwise get a weight that a different test value blows up."""
    mu, sd = train_x.mean(0), train_x.std(0)
    inv = torch.where(sd > 1e-5, 1.0 / sd.clamp_min(1e-5), torch.zeros_like(sd))
    a = torch.cat([(train_x - mu) * inv, torch.ones(len(train_x), 1)], 1).double()
    w = torch.linalg.solve(a.t() @ a + lam * len(a) * torch.eye(a.shape[1], dtype=a.dtype), a.t() @ train_y.double())
    b = torch.cat([(test_x - mu) * inv, torch.ones(len(test_x), 1)], 1).double()
    return (b @ w).float()


@torch.no_grad()
def _embed_all(
    encoder: MotionEncoder, data: LabelledViews, ids: np.ndarray, device, batch: int = 32, identity: bool = False
):
    """Embeddings (and analyser predictions) of every view of samples ``ids``; rows ordered sample-major."""
    motion, ident, preds = [], [], []
    for i in range(0, len(ids), max(1, batch // data.views)):
        chunk = ids[i : i + max(1, batch // data.views)]
        x = to_model_images(data.get_images(chunk)).flatten(0, 1).to(device)
        if isinstance(encoder, SyntheticAnalyser):
            out = encoder.forward_all(x)
            motion.append(out["motion"].cpu())
            pred = encoder.unstandardise(out["pred_std"])
            preds.append(torch.cat([pred["expression"], pred["gaze"]], 1).cpu())
            ident.append(out["identity"].cpu())
        else:
            motion.append(encoder.encode(x).cpu())
    cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
    return cat(motion), cat(preds), cat(ident)


@torch.no_grad()
def evaluate_motion_encoder(
    encoder: MotionEncoder,
    data: LabelledViews,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    device,
    probe_samples: int = 512,
    visible: list[str] | None = None,
) -> dict[str, Any]:
    """Held-out R² per parameter (analyser heads, with a 95% interval over identities), what the
    motion embedding carries besides motion (identity retrieval across different samples, the share
    of its variance explained by identity and by pose), and a linear-probe R² of the embedding.

    ``visible``: the expression coefficients the data's visibility measurement found visible;
    ``r2_visible_min`` is the smallest held-out R² among them."""
    was_training = encoder.training
    encoder.eval()
    v = data.views
    labels = np.concatenate([data.expression, data.gaze], 1)
    names = data.expression_names + data.gaze_names
    val_motion, val_pred, val_ident = _embed_all(encoder, data, val_ids, device)
    val_true = np.repeat(labels[val_ids], v, axis=0)
    val_identity = np.repeat(data.identity[val_ids], v)
    val_sample = np.repeat(val_ids, v)
    out: dict[str, Any] = {
        "n_val_samples": int(len(val_ids)),
        "n_val_images": int(len(val_ids) * v),
        "n_val_identities": int(len(np.unique(val_identity))),
    }
    e = len(data.expression_names)
    if val_pred is not None:
        r2 = r2_scores(val_pred.numpy(), val_true)
        out["r2"] = dict(zip(names, r2))
        out["r2_ci95"] = dict(zip(names, bootstrap_r2_ci(val_pred.numpy(), val_true, val_identity)))
        exp_r2 = [x for x in r2[:e] if x is not None]
        gaze_r2 = [x for x in r2[e:] if x is not None]
        out["r2_expression_mean"] = float(np.mean(exp_r2)) if exp_r2 else None
        out["r2_gaze_mean"] = float(np.mean(gaze_r2)) if gaze_r2 else None
        out["mae_expression"] = float(np.abs(val_pred.numpy()[:, :e] - val_true[:, :e]).mean())
        if visible:
            vis = [out["r2"].get(n) for n in visible]
            out["visible_expressions"] = list(visible)
            out["r2_visible_min"] = (
                float(min(x for x in vis if x is not None)) if any(x is not None for x in vis) else None
            )
    if val_ident is not None:
        top1, chance = retrieval_top1(val_ident, val_identity)
        out["identity_retrieval_top1"] = top1
        out["identity_retrieval_chance"] = chance
    # what the motion embedding carries besides motion (it should carry little of either)
    top1, chance = retrieval_top1(val_motion, val_identity, exclude=val_sample)
    out["motion_identity_retrieval_top1"], out["motion_identity_retrieval_chance"] = top1, chance
    out["motion_variance_by_identity"] = variance_explained_by_groups(val_motion, val_identity)
    rng = np.random.default_rng(0)
    out["motion_variance_by_identity_chance"] = float(
        np.mean(
            [
                variance_explained_by_groups(val_motion, permuted_groups(val_identity, val_sample, rng))
                for _ in range(20)
            ]
        )
    )
    probe_ids = np.unique(train_ids[np.linspace(0, len(train_ids) - 1, min(probe_samples, len(train_ids))).astype(int)])
    tr_motion, _, _ = _embed_all(encoder, data, probe_ids, device)
    tr_true = torch.from_numpy(np.repeat(labels[probe_ids], v, axis=0))
    probe = _ridge_probe(tr_motion, tr_true, val_motion).numpy()
    probe_r2 = r2_scores(probe, val_true)
    out["probe_r2"] = dict(zip(names, probe_r2))
    pe = [x for x in probe_r2[:e] if x is not None]
    out["probe_r2_expression_mean"] = float(np.mean(pe)) if pe else None
    if data.cameras is not None:
        tr_pose, val_pose = pose_features(data.cameras[probe_ids]), pose_features(data.cameras[val_ids])
        out["motion_variance_by_pose"] = explained_variance(_ridge_probe(tr_pose, tr_motion, val_pose), val_motion)
    out["motion_variance_by_expression"] = explained_variance(
        _ridge_probe(tr_true.float(), tr_motion, torch.from_numpy(val_true)), val_motion
    )
    encoder.train(was_training)
    return out


# ---------------------------------------------------------------- the stage
def stage_config(cfg: PipelineConfig) -> dict[str, Any]:
    """What the artifact version hashes: the motion_encoder section and the embedding size."""
    return {**cfg.stage_config("motion_encoder"), "motion_dim": cfg.model.psi.motion_dim}


def train_motion_encoder(
    cfg: PipelineConfig,
    samples_artifact: Artifact | str = "analyser_samples@latest",
    registry: ArtifactRegistry | None = None,
    stop_after: int | None = None,
) -> Artifact:
    """Train (or reuse, or resume) the ``motion_encoder`` artifact for ``samples_artifact``.

    ``stop_after``: stop after that many steps in this call (as a kill would) and raise
    :class:`TrainingInterrupted`; the next call resumes from the last checkpoint.
    """
    registry = registry or ArtifactRegistry()
    me = cfg.motion_encoder
    if me.backend == "pdfgc":
        return run_once(registry, KIND, stage_config(cfg), [], SCHEMA_VERSION, lambda w: _publish_pdfgc(cfg, w))
    if me.backend != "synthetic":
        raise ValueError(f"motion_encoder.backend={me.backend!r}; use 'synthetic' or 'pdfgc'")
    # its own store (stage 1b: several expressions per identity) or, as the tests do, stage 1's
    samples = stages.resolve(registry, samples_artifact, ("analyser_samples", "genhead_samples"), cfg.preset)
    gs.validate(samples.path / "store.zarr")
    return run_once(
        registry, KIND, stage_config(cfg), [samples], SCHEMA_VERSION, lambda w: _train(cfg, samples, w, stop_after)
    )


def _publish_pdfgc(cfg: PipelineConfig, w: ArtifactWriter) -> None:
    me = cfg.motion_encoder
    enc = build_motion_encoder("pdfgc", weights=me.pdfgc_weights)
    if cfg.model.psi.motion_dim != enc.embedding_dim:
        raise ValueError(
            f"motion_encoder.backend=pdfgc gives {enc.embedding_dim}-d embeddings but model.psi.motion_dim is "
            f"{cfg.model.psi.motion_dim}; set model.psi.motion_dim={enc.embedding_dim}"
        )
    save_motion_encoder(w.path / CHECKPOINT_NAME, enc, extra={"weights": me.pdfgc_weights})
    metrics = {"backend": "pdfgc", "embedding_dim": enc.embedding_dim}
    (w.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    w.metrics.update(metrics)


MIRRORED = {"blink_left": "blink_right", "blink_right": "blink_left"}  # what a horizontal flip swaps
NEGATED_WHEN_MIRRORED = ("eye_yaw",)  # and what it negates (+yaw looks towards +x)


def mirror_map(names: list[str]) -> tuple[list[int], torch.Tensor]:
    """(column permutation, sign per column) that turn labels of an image into those of its mirror image."""
    perm = [names.index(MIRRORED.get(n, n)) if MIRRORED.get(n, n) in names else i for i, n in enumerate(names)]
    sign = torch.tensor([-1.0 if n in NEGATED_WHEN_MIRRORED else 1.0 for n in names])
    return perm, sign


def _mirror(
    x: torch.Tensor, y: torch.Tensor, names: list[str], gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip half the images left–right and swap/negate their labels accordingly (blink L↔R, eye yaw)."""
    perm, sign = mirror_map(names)
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x, y = x.clone(), y.clone()
    x[flip] = x[flip].flip(-1)
    y[flip] = y[flip][:, perm] * sign.to(y)
    return x, y


def _jitter(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    if amount <= 0:
        return x
    gain = 1.0 + amount * (2.0 * torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 1.0)
    return ((x + 1.0) * gain.to(x) - 1.0).clamp(-1.0, 1.0)


def _shift_scale(x: torch.Tensor, shift: float, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Per-image random zoom ``U(1 ± scale)`` and translation ``U(± shift)`` of the image width (border pixels
    extend): what a face crop of another alignment looks like. Labels do not change."""
    if shift <= 0 and scale <= 0:
        return x
    b = x.shape[0]
    z = 1.0 + scale * (2.0 * torch.rand(b, generator=gen) - 1.0)
    t = 2.0 * shift * (2.0 * torch.rand(b, 2, generator=gen) - 1.0)  # grid units: the image spans [−1, 1]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / z
    theta[:, :, 2] = t
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blur(x: torch.Tensor, sigma_max: float, gen: torch.Generator) -> torch.Tensor:
    """Per-image Gaussian blur of σ ~ U(0, ``sigma_max``) pixels (replicate border): E_mot reads Ψ3d's pseudo views
    in stage 3, which are softer than the renders it trains on. σ → 0 leaves an image unchanged."""
    if sigma_max <= 0:
        return x
    b, c, h, w = x.shape
    sigma = sigma_max * torch.rand(b, generator=gen)
    r = max(1, math.ceil(3 * sigma_max))
    taps = torch.arange(-r, r + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(x).repeat_interleave(c, 0)  # [b·c, 2r+1]
    y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)
    y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


class MotionEncoderTrainer(Trainer):
    """Stage 2b: the synthetic analyser (E_mot's backend ``synthetic``) on the analyser store's labels."""

    kind = KIND
    model_key = "analyser"
    generator_key = "augment"
    uses_ddp = False

    def __init__(self, cfg: PipelineConfig, samples: Artifact, w: ArtifactWriter, stop_after: int | None):
        super().__init__(cfg, cfg.motion_encoder, w, stop_after)
        self.samples_art = samples
        self.device = resolve_device(cfg.device)

    def prepare(self) -> None:
        me = self.tc
        data = self.data = LabelledViews(self.samples_art.path / "store.zarr")
        # stage 1b's visibility measurement
        self.visible = self.samples_art.manifest.get("extra", {}).get("visible_expressions")
        self.train_ids, self.val_ids = data.split(me.val_identities)
        self.val_eval_ids = self.val_ids[: me.val_max_samples]
        if me.batch_size < 2:
            raise ValueError(f"motion_encoder.batch_size must be ≥ 2 (two views per sample), got {me.batch_size}")

    def build_model(self):
        me, data = self.tc, self.data
        model = SyntheticAnalyser(
            motion_dim=self.cfg.model.psi.motion_dim,
            identity_dim=me.identity_dim,
            input_size=me.input_size,
            width=me.width,
            expression_names=data.expression_names,
            gaze_names=data.gaze_names,
            crop_fraction=me.crop_fraction,
            stem_convs=me.stem_convs,
        )
        labels = np.concatenate([data.expression, data.gaze], 1)[self.train_ids]
        model.set_target_stats(torch.from_numpy(labels.mean(0)), torch.from_numpy(labels.std(0)))
        return model.to(self.device)

    def sampler_items(self) -> np.ndarray:
        return self.train_ids

    def sampler_batch(self) -> int:
        return self.tc.batch_size // 2  # each drawn sample brings a partner (same identity)

    def after_setup(self) -> None:
        data = self.data
        self.target = torch.from_numpy(np.concatenate([data.expression, data.gaze], 1))
        self.names = data.expression_names + data.gaze_names
        self.identity = torch.from_numpy(data.identity)
        self.rows_of = data.rows_by_identity(self.train_ids)

    def train_step(self, step: int) -> dict[str, float]:
        me, data, sampler, gen, model, device = self.tc, self.data, self.sampler, self.gen, self.model, self.device
        target, names, identity, rows_of = self.target, self.names, self.identity, self.rows_of
        model.train()
        ids = sampler.next_batch()
        # the second half of the batch: another sample of the same identity (analyser stores: another expression,
        # pose and camera, so the identity head learns what stays) or, where there is none, another view
        mates, alone = data.partners(ids, rows_of, sampler.rng)
        va = sampler.rng.integers(0, data.views, len(ids))
        vb = sampler.rng.integers(0, data.views, len(ids))
        if data.views > 1:
            vb = np.where(alone, (va + sampler.rng.integers(1, data.views, len(ids))) % data.views, vb)
        r = np.arange(len(ids))
        x = to_model_images(np.concatenate([data.get_images(ids)[r, va], data.get_images(mates)[r, vb]]))
        x = _jitter(x, me.brightness_jitter, gen)
        x = _shift_scale(x, me.shift_jitter, me.scale_jitter, gen)
        x = _blur(x, me.blur_jitter, gen)
        ids2 = np.concatenate([ids, mates])
        y = target[ids2]
        if me.mirror:
            x, y = _mirror(x, y, names, gen)
        x, y = x.to(device), y.to(device)
        out = model.forward_all(x, detach_identity=me.identity_detached)
        e = len(data.expression_names)
        y_std = model.standardise(y[:, :e], y[:, e:])
        err = (out["pred_std"] - y_std) ** 2
        loss_motion = err.mean()
        loss_id = supervised_contrastive_loss(out["identity"], identity[ids2].to(device), me.temperature)
        loss = loss_motion + me.identity_weight * loss_id
        lr = cosine_lr(me.lr, step, me.steps, me.lr_final_fraction, me.lr_warmup_steps)
        self.optimise(loss, step, lr)
        err = err.detach()
        return {
            "loss": loss.item(),
            "loss_motion": loss_motion.item(),
            "loss_identity": loss_id.item(),
            "loss_expression": err[:, :e].mean().item(),
            "loss_gaze": err[:, e:].mean().item() if err.shape[1] > e else 0.0,
            "lr": lr,
        }

    def validate(self, step: int) -> dict[str, float]:
        m = evaluate_motion_encoder(
            self.ema.module,
            self.data,
            self.train_ids,
            self.val_eval_ids,
            self.device,
            probe_samples=128,
            visible=self.visible,
        )
        keys = (
            "r2_expression_mean",
            "r2_visible_min",
            "r2_gaze_mean",
            "identity_retrieval_top1",
            "motion_identity_retrieval_top1",
            "probe_r2_expression_mean",
        )
        return {k: m[k] for k in keys if m.get(k) is not None}

    def interrupted(self, steps_done: int) -> InterruptedError:
        return TrainingInterrupted(
            f"motion_encoder stopped after {steps_done}/{self.tc.steps} steps; rerun to resume from {self.w.path}"
        )

    def finish(self, rows: list[dict[str, float]]) -> None:
        cfg, me, w, data, samples, device = self.cfg, self.tc, self.w, self.data, self.samples_art, self.device
        train_ids, val_ids, val_eval_ids, visible = self.train_ids, self.val_ids, self.val_eval_ids, self.visible
        final = self.ema.module.eval()
        metrics = evaluate_motion_encoder(final, data, train_ids, val_eval_ids, device, visible=visible)
        metrics.update({"steps": me.steps, "embedding_dim": final.embedding_dim, "backend": "synthetic"})
        ceilings = {n: samples.manifest.get("metrics", {}).get(f"r2_ceiling_{n}") for n in data.expression_names}
        if any(v is not None for v in ceilings.values()):  # stage 1b's: what one image at this resolution allows
            metrics["r2_ceiling"] = ceilings
        save_motion_encoder(w.path / CHECKPOINT_NAME, final.cpu(), extra={"samples": samples.ref, "steps": me.steps})
        final.to(device)
        (w.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if rows:
            plot_curves(rows, w.path / "curves.png", title=f"motion encoder ({cfg.preset}, {samples.ref})")
        _sample_grid(final, data, val_ids, device, w.path / "samples" / "val_predictions.png")
        shutil.rmtree(w.path / "checkpoints", ignore_errors=True)  # resumable state is not part of the payload
        w.metrics.update(metrics)
        w.counts.update(
            {
                "steps": me.steps,
                "train_samples": int(len(train_ids)),
                "val_samples": int(len(val_ids)),
                "views": int(data.views),
            }
        )
        r2 = metrics.get("r2", {})
        print(
            "motion_encoder: held-out R² "
            + ", ".join(f"{k} {v:.2f}" for k, v in r2.items() if v is not None)
            + f"; identity top-1 from the motion embedding {_fmt(metrics.get('motion_identity_retrieval_top1'))}"
            f" (chance {_fmt(metrics.get('motion_identity_retrieval_chance'))})"
            f" over {metrics.get('n_val_identities')} held-out identities"
        )


def _train(cfg: PipelineConfig, samples: Artifact, w: ArtifactWriter, stop_after: int | None) -> None:
    MotionEncoderTrainer(cfg, samples, w, stop_after).run()


@torch.no_grad()
def _sample_grid(
    model: SyntheticAnalyser, data: LabelledViews, val_ids: np.ndarray, device, path: Path, n: int = 6
) -> None:
    """Held-out samples (rows) × views; row titles: the strongest true expression, true/predicted."""
    ids = val_ids[:n]
    imgs = to_model_images(data.get_images(ids))  # [n, V, 3, H, W]
    pred = model.predict(imgs.flatten(0, 1).to(device))["expression"].cpu().reshape(len(ids), data.views, -1).mean(1)
    titles = []
    for k, i in enumerate(ids):
        j = int(np.argmax(data.expression[i]))
        titles.append(
            f"id {int(data.identity[i])}: {data.expression_names[j]} "
            f"{data.expression[i, j]:.2f}/{float(pred[k, j]):.2f}"
        )
    save_image_grid(
        imgs,
        path,
        row_titles=titles,
        col_titles=[f"view {v}" for v in range(data.views)],
        title="held-out: strongest expression true/pred (mean over views)",
    )


# ---------------------------------------------------------------- loading (frozen, downstream)
def load_motion_encoder_artifact(
    artifact_or_path: Artifact | str | Path,
    device: str | torch.device = "cpu",
    registry: ArtifactRegistry | None = None,
) -> MotionEncoder:
    """Frozen E_mot (eval, ``requires_grad=False``) from an Artifact, a ``motion_encoder@<version|latest>``
    reference, an artifact folder or its ``checkpoint.pt``."""
    if isinstance(artifact_or_path, str) and "@" in artifact_or_path and not Path(artifact_or_path).exists():
        artifact_or_path = (registry or ArtifactRegistry()).resolve(artifact_or_path, schema_version=SCHEMA_VERSION)
    return _load_from_path(artifact_or_path, device)


def motion_encoder_from_config(
    cfg: PipelineConfig,
    registry: ArtifactRegistry | None = None,
    ref: str | Artifact = "motion_encoder@latest",
    device="cpu",
) -> MotionEncoder:
    """E_mot as the config says: ``pdfgc`` → the user's PD-FGC weights directly; ``synthetic`` → the artifact
    ``ref``."""
    if cfg.motion_encoder.backend == "pdfgc":
        return freeze(build_motion_encoder("pdfgc", weights=cfg.motion_encoder.pdfgc_weights).to(device))
    return load_motion_encoder_artifact(ref, device, registry)


# ---------------------------------------------------------------- reports
def _fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _interval(ci: list[float] | None) -> str:
    return "–" if ci is None else f"{ci[0]:.2f}…{ci[1]:.2f}"


def r2_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{parameter, r2_head, r2_ci95, r2_ceiling, r2_probe, visible}`` for a Prefect table artifact (None
    where undefined; the ceiling is stage 1b's R² ceiling of one image at the store's resolution)."""
    head, probe, ci = metrics.get("r2", {}), metrics.get("probe_r2", {}), metrics.get("r2_ci95", {})
    ceiling = metrics.get("r2_ceiling") or {}
    vis = metrics.get("visible_expressions")
    return [
        {
            "parameter": k,
            "r2_head": head.get(k),
            "r2_ci95": ci.get(k),
            "r2_ceiling": ceiling.get(k),
            "r2_probe": probe.get(k),
            "visible": None if vis is None or k not in metrics.get("r2", {}) or k.startswith("eye_") else k in vis,
        }
        for k in head
    ]


def summary_markdown(art: Artifact) -> str:
    """Markdown summary of a ``motion_encoder`` artifact: headline metrics and the per-parameter R² table."""
    m = art.manifest.get("metrics", {})
    lines = [
        f"## motion encoder `{art.ref}`",
        "",
        f"- backend: **{m.get('backend', '?')}**, embedding: {m.get('embedding_dim', '?')}-d, "
        f"parents: {', '.join(art.parents) or '–'}",
        f"- path: `{art.path}`",
    ]
    if "r2" in m:
        lines += [
            f"- held-out samples: {m.get('n_val_samples')} ({m.get('n_val_images')} images), steps: {m.get('steps')}",
            f"- mean R² expression: **{_fmt(m.get('r2_expression_mean'))}** (heads), "
            f"{_fmt(m.get('probe_r2_expression_mean'))} "
            "(linear probe of the embedding); gaze: " + _fmt(m.get("r2_gaze_mean")),
            f"- identity head retrieval top-1: {_fmt(m.get('identity_retrieval_top1'))} "
            f"(chance {_fmt(m.get('identity_retrieval_chance'))})",
            f"- what the **motion** embedding carries besides motion, over {m.get('n_val_identities')} "
            "held-out identities: identity "
            f"top-1 across samples **{_fmt(m.get('motion_identity_retrieval_top1'))}** "
            f"(chance {_fmt(m.get('motion_identity_retrieval_chance'))}); "
            f"variance between identities {_fmt(m.get('motion_variance_by_identity'))} "
            f"(chance {_fmt(m.get('motion_variance_by_identity_chance'))}); "
            f"explained by pose {_fmt(m.get('motion_variance_by_pose'))}, by the expression/gaze labels "
            f"{_fmt(m.get('motion_variance_by_expression'))}",
            "",
            "| parameter | visible | R² (head) | 95% interval | ceiling | R² (probe) |",
            "|---|---|---:|---|---:|---:|",
            *(
                f"| {r['parameter']} | {_fmt(r['visible'])} | {_fmt(r['r2_head'])} | {_interval(r['r2_ci95'])} "
                f"| {_fmt(r['r2_ceiling'])} | {_fmt(r['r2_probe'])} |"
                for r in r2_table(m)
            ),
            "",
            "R² is undefined (–) for parameters that are constant in the held-out data; "
            "the interval resamples held-out identities. Ceiling: the R² one image at the store's resolution allows "
            "(stage 1b's visibility measurement); visible: ceiling ≥ 0.8.",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------- the declaration
SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=("motion_encoder",),
    parents=("analyser_samples|genhead_samples",),
    build=train_motion_encoder,
    config=stage_config,
    load=load_motion_encoder_artifact,
    train=_train,
    summary=summary_markdown,
)
train_motion_encoder_task = SPEC.task()
