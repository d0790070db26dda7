"""Stage 4: Ψ by cross-view self-reenactment on pseudo multi-view videos (DESIGN.md §1).

One training sample, exactly as the design states:

1. a video and a source frame Î_s;
2. a time step t of the same video and two of its pseudo views p ≠ q: driving input I_d(θ_p),
   target I_d(θ_q);
3. with probability ``p_target_real`` the target is replaced by the real frame Î_d (and θ_q by its
   camera); with probability ``p_driving_real`` the driving input is replaced by Î_d;
4. v_s = E_mot(Î_s), v_d = E_mot(driving input) — E_mot is frozen; its embeddings of every frame
   and view were computed in stage 3 and are read from the store;
5. I_re = R(Ψ(Î_s, v_s, v_d), θ_q);
6. real target → L1 + LPIPS + identity + adversarial; pseudo target → LPIPS only.

Ψ starts from Ψ3d (every weight but the motion cross-attention parts), so at step 0 it renders
what Ψ3d renders; cross-attention parameters get their own learning-rate multiplier. The last
``val_videos`` videos are held out: their self-reenactment is measured at step 0 and during
training (pipeline_tasks/training/psi_validation.py: PSNR, mouth/eye-region PSNR and the change correlation,
beside no-motion, copy-source and Ψ3d(source) on the same pairs), and the manifest records both.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from models.checkpoints import load_checkpoint
from models.config import ModelConfig
from models.genhead.regions import region_masks
from models.psi import build_psi, init_psi_from_psi3d, param_groups
from models.psi.network import Psi
from pipeline_tasks import stages
from pipeline_tasks.config import PipelineConfig
from pipeline_tasks.data.images import to_model_images
from pipeline_tasks.data.pseudo_mv_videos import PseudoMVVideos, SamplePlan, draw_plan, split_videos
from pipeline_tasks.eval.metrics import psnr
from pipeline_tasks.stage import StageSpec, run_once
from pipeline_tasks.training.distributed import SINGLE, DistContext, launch
from pipeline_tasks.training.grid import save_image_grid
from pipeline_tasks.training.loop import CHECKPOINT, publish_trained
from pipeline_tasks.training.objective import PsiObjective
from pipeline_tasks.training.psi_validation import (
    HeldOutPairs,
    baseline_scores,
    margins,
    reenactment_scores,
    truth_with_labels_of,
)
from pipeline_tasks.training.trainer import Trainer
from storage_schemas import pseudo_mv as pm
from storage_schemas.artifacts import Artifact, ArtifactRegistry, ArtifactWriter

KIND = "psi"
SCHEMA_VERSION = 1


def validation_plan(data: PseudoMVVideos, n_per_video: int = 16, seed: int = 12345) -> SamplePlan:
    """Fixed self-reenactment samples of held-out videos: real driving frame, real target frame."""
    rng = np.random.default_rng(seed)
    videos = np.repeat(np.arange(len(data.ids)), n_per_video)
    plan = draw_plan(rng, videos, data.lengths, data.k, 1.0, 1.0)
    return plan


def held_out_pairs(data: PseudoMVVideos, plan: SamplePlan, sharpness: float = 200.0) -> HeldOutPairs:
    """The validation pairs of ``plan`` with what the synthetic world knows about them: the mouth/eye
    regions of each target and the truth with the source's expression at the target camera."""
    b = data.batch(plan, "cpu")
    res = b["target"].shape[-1]
    pairs = HeldOutPairs(b["source"], b["driving"], b["target"], b["cameras"], b["motion_source"], b["motion_driving"])
    not_gt = [
        data.ids[v] for v in sorted(set(plan.video.tolist())) if data.attrs[v].get("camera_source") != "ground_truth"
    ]
    if not_gt:
        pairs.note = f"no region / change metrics: cameras of {', '.join(not_gt)} are not ground truth"
        return pairs
    pairs.regions = region_masks(b["cameras"], res)
    truth = torch.empty_like(b["target"])
    try:
        for v in sorted(set(plan.video.tolist())):
            rows = np.flatnonzero(plan.video == v)
            truth[rows] = truth_with_labels_of(data.attrs[v], plan.source_t[rows], b["cameras"][rows], res, sharpness)
        pairs.truth_source_expression = truth
    except (OSError, KeyError, ValueError) as exc:  # a moved or foreign sidecar: the other metrics still stand
        pairs.note = f"no change correlation: {exc}"
    return pairs


@torch.no_grad()
def reenactment_metrics(
    psi: Psi, data: PseudoMVVideos, plan: SamplePlan, objective: PsiObjective, device, batch: int = 8
) -> dict[str, float]:
    """Held-out self-reenactment: L1 + LPIPS loss and PSNR of Ψ's render against the real frame."""
    was_training = psi.training
    psi.eval()
    losses, psnrs = [], []
    for s in range(0, len(plan.video), batch):
        sub = SamplePlan(**{k: v[s : s + batch] for k, v in plan.__dict__.items()})
        b = data.batch(sub, device)
        out = psi.render(psi(b["source"], b["motion_source"], b["motion_driving"]), b["cameras"], perturb=False)
        l1 = (out["image"] - b["target"]).abs().mean()
        losses.append(float(l1 + objective.lpips(out["image"], b["target"])) * len(sub.video))
        psnrs.append(psnr(out["image"], b["target"]))
    psi.train(was_training)
    return {"reenactment_loss": sum(losses) / len(plan.video), "psnr": float(torch.cat(psnrs).mean())}


def stage_config(cfg: PipelineConfig) -> dict:
    return cfg.stage_config("psi", "model", "device")


def train_psi(
    cfg: PipelineConfig,
    pseudo_mv: Artifact | str,
    psi3d: Artifact | str,
    motion_encoder: Artifact | str,
    registry: ArtifactRegistry | None = None,
    stop_after: int | None = None,
) -> Artifact:
    """Train (or reuse, or resume) the ``psi`` artifact."""
    registry = registry or ArtifactRegistry()
    pmv = stages.resolve(registry, pseudo_mv, "pseudo_mv", cfg.preset)
    p3 = stages.resolve(registry, psi3d, "psi3d", cfg.preset)
    me = stages.resolve(registry, motion_encoder, "motion_encoder", cfg.preset)
    pm.validate(pmv.path / "store.zarr")
    return run_once(
        registry,
        KIND,
        stage_config(cfg),
        [pmv, p3, me],
        SCHEMA_VERSION,
        lambda w: (
            launch(KIND, cfg, [pmv, p3, me], w, stop_after, cfg.psi.nproc_per_node)
            if cfg.psi.nproc_per_node > 1 or cfg.distributed.nnodes > 1
            else _train(cfg, pmv, p3, me, w, stop_after)
        ),
    )


class PsiTrainer(Trainer):
    """Stage 4: Ψ by cross-view self-reenactment on the pseudo multi-view store, starting from Ψ3d."""

    kind = KIND
    model_key = "psi"
    samples = True

    def __init__(self, cfg: PipelineConfig, pmv: Artifact, p3: Artifact, me: Artifact, w, stop_after, ddp=SINGLE):
        super().__init__(cfg, cfg.psi, w, stop_after, ddp)
        self.pmv, self.p3, self.me = pmv, p3, me

    def prepare(self) -> None:
        cfg, tc = self.cfg, self.tc
        store = self.pmv.path / "store.zarr"
        self.train_ids, self.val_ids = split_videos(pm.read_index(store), tc.val_videos)
        self.train = PseudoMVVideos(store, self.train_ids)
        self.val = PseudoMVVideos(store, self.val_ids)
        if self.train.data[0]["frames"].shape[1] != cfg.model.psi.image_resolution:
            raise ValueError(
                f"{self.pmv.ref}: frames are {self.train.data[0]['frames'].shape[1]}², preset {cfg.preset!r} needs "
                f"{cfg.model.psi.image_resolution}²"
            )

    def build_model(self):
        psi = build_psi(self.cfg.model).to(self.device)
        psi3d_ckpt = load_checkpoint(self.p3.path / CHECKPOINT, expected=self.cfg.model, map_location=self.device)
        self.not_copied = init_psi_from_psi3d(psi, psi3d_ckpt.state_dicts["psi"])
        return psi

    def build_objective(self):
        tc = self.tc
        e_mot = stages.load(self.me, device=self.device) if tc.losses.identity_backend == "synthetic" else None
        embedder = e_mot.identity_embedder() if e_mot is not None else None
        return PsiObjective(self.cfg.model, tc.losses, identity_embedder=embedder, lr=tc.lr).to(self.device)

    def optimizer_params(self):
        return param_groups(self.model, self.tc.lr, self.tc.cross_attention_lr_mult)

    def sampler_items(self) -> np.ndarray:
        return np.arange(len(self.train.ids))

    def after_setup(self) -> None:
        cfg, ddp, device = self.cfg, self.ddp, self.device
        self.vplan = validation_plan(self.val)
        self.last_step_scores: dict[str, float] | None = None
        self.pairs = held_out_pairs(self.val, self.vplan, cfg.genhead.sharpness) if ddp.is_main else None
        self.base = (
            baseline_scores(self.pairs, stages.load(self.p3, model_cfg=cfg.model, device=device), device)
            if ddp.is_main
            else {}
        )
        step0_path = self.w.path / "step0_metrics.json"
        self.step0 = None
        if step0_path.exists():  # resumed: the step-0 measurement was taken before the kill
            self.step0 = json.loads(step0_path.read_text())
        elif ddp.is_main:
            self.step0 = self._scores(self.model)
            step0_path.write_text(json.dumps(self.step0))

    def _scores(self, model) -> dict[str, float]:
        scores = reenactment_scores(model, self.pairs, self.device)
        return {
            **reenactment_metrics(model, self.val, self.vplan, self.objective, self.device),
            **scores,
            **margins(scores, self.base),
        }

    def train_step(self, step: int) -> dict[str, float]:
        tc, objective = self.tc, self.objective
        videos = self.sampler.next_batch()
        plan = draw_plan(
            self.sampler.rng, videos, self.train.lengths, self.train.k, tc.p_target_real, tc.p_driving_real
        )
        plan = SamplePlan(*self.ddp.shard(*plan.__dict__.values()))  # this rank's part of the global batch
        b = self.train.batch(plan, self.device)
        out = self.model.render(
            self.net(b["source"], b["motion_source"], b["motion_driving"]), b["cameras"], generator=self.gen
        )
        loss, log = objective.generator_loss(out, b["target"], b["target_alpha"], b["cameras"], b["real"], step)
        self.optimise(loss, step)
        real = b["real"]
        if real.any():
            fake = {k: out[k][real] for k in ("image", "image_raw")}
            log.update(
                objective.discriminator_step(fake, b["target"][real], b["cameras"][real], b["cameras"][real], step)
            )
        self.ddp.average_parameters(objective.discriminator)
        return {"loss": log.pop("total"), **log}

    def validate(self, step: int) -> dict[str, float]:
        scores = self._scores(self.ema.module)
        # the loop validates at the last step: finish() reuses it rather than scoring the same weights again
        self.last_step_scores = scores if step == self.tc.steps else None
        return scores

    @torch.no_grad()
    def sample(self, step: int) -> None:
        model, vplan, val, device = self.ema.module.eval(), self.vplan, self.val, self.device
        n = min(4, len(vplan.video))
        sub = SamplePlan(**{k: v[:n] for k, v in vplan.__dict__.items()})
        sub.driving_real = np.zeros(n, bool)  # show a pseudo view as driving input
        b = val.batch(sub, device)
        planes = model(b["source"], b["motion_source"], b["motion_driving"])
        pred = model.render(planes, b["cameras"], perturb=False)["image"].clamp(-1, 1)
        d = val.data
        side = torch.stack([to_model_images(d[v]["views"][t, q]) for v, t, q in zip(sub.video, sub.t, sub.view_q)]).to(
            device
        )
        side_cams = (
            torch.stack([torch.from_numpy(d[v]["view_cameras"][t, q]) for v, t, q in zip(sub.video, sub.t, sub.view_q)])
            .float()
            .to(device)
        )
        pred_side = model.render(planes, side_cams, perturb=False)["image"].clamp(-1, 1)
        rows = torch.stack([b["source"], b["driving"], pred, b["target"], pred_side, side], dim=1).cpu()
        save_image_grid(
            rows,
            self.w.path / "samples" / f"step_{step:06d}.png",
            col_titles=["source", "driving", "Ψ (frame cam)", "real frame", "Ψ (novel cam)", "pseudo view"],
            title=f"Ψ step {step} (held-out videos)",
        )

    def finish(self, rows: list[dict[str, float]]) -> None:
        cfg, tc, w, base, pairs, step0 = self.cfg, self.tc, self.w, self.base, self.pairs, self.step0
        train_ids, val_ids, not_copied = self.train_ids, self.val_ids, self.not_copied
        final = self.last_step_scores or self._scores(self.ema.module)
        metrics = {
            "val_reenactment_loss_step0": step0["reenactment_loss"],
            "val_psnr_step0": step0["psnr"],
            **{f"val_{k}": v for k, v in final.items()},
            **{f"baseline_{k}": v for k, v in base.items()},
            "val_pairs": pairs.n,
            "val_videos_held_out": val_ids != train_ids,
        }
        publish_trained(
            w,
            cfg.model,
            self.ema.module,
            rows,
            f"Ψ ({cfg.preset})",
            metrics,
            {
                "steps": tc.steps,
                "train_videos": len(train_ids),
                "val_videos": len(val_ids),
                "params_not_copied_from_psi3d": len(not_copied),
            },
            {
                "kind": KIND,
                "steps": tc.steps,
                "not_copied_from_psi3d": not_copied,
                "validation_note": pairs.note or "region and change metrics on ground-truth cameras and labels",
            },
        )
        region = (
            f"; mouth PSNR {final['mouth_psnr']:.2f} dB (no motion {final['no_motion_mouth_psnr']:.2f}, "
            f"Ψ3d(source) {base.get('psi3d_source_mouth_psnr', float('nan')):.2f}, "
            f"copy-source {base['copy_source_mouth_psnr']:.2f})"
            if "mouth_psnr" in final
            else f" ({pairs.note})"
        )
        change = f"; change correlation {final['change_correlation']:.3f}" if "change_correlation" in final else ""
        print(
            f"psi: held-out self-reenactment ({pairs.n} pairs) loss {step0['reenactment_loss']:.4f} at step 0 → "
            f"{final['reenactment_loss']:.4f}; PSNR {step0['psnr']:.2f} → {final['psnr']:.2f} dB "
            f"(no motion {final['no_motion_psnr']:.2f}, "
            f"copy-source {base['copy_source_psnr']:.2f}){region}{change}"
        )


def _train(
    cfg: PipelineConfig,
    pmv: Artifact,
    p3: Artifact,
    me: Artifact,
    w: ArtifactWriter,
    stop_after: int | None,
    ddp: DistContext = SINGLE,
) -> None:
    """Train in this process; ``ddp``: this worker's rank in a torchrun run (pipeline_tasks/training/distributed.py)."""
    PsiTrainer(cfg, pmv, p3, me, w, stop_after, ddp).run()


def load_psi(artifact: Artifact, model_cfg: ModelConfig | None = None, device="cpu") -> Psi:
    """The published (EMA) Ψ of an artifact, in eval mode; refuses another preset."""
    ckpt = load_checkpoint(artifact.path / CHECKPOINT, expected=model_cfg, map_location=device)
    psi = build_psi(ckpt.config).to(device)
    ckpt.load_into({"psi": psi})
    return psi.eval()


SPEC = StageSpec(
    kind=KIND,
    schema_version=SCHEMA_VERSION,
    sections=("psi", "model", "device"),
    parents=("pseudo_mv", "psi3d", "motion_encoder"),
    build=train_psi,
    config=stage_config,
    load=load_psi,
    train=_train,
)
train_psi_task = SPEC.task()
