"""Typed configuration of the pipeline: one section per stage, loaded from ``configs/<preset>.yaml``.

Override any field with dotted keys, e.g. ``["psi3d.steps=200", "genhead.n_identities=64"]``
(Makefile ``SET="..."`` and the flows' ``overrides`` parameter use this). The resolved config
serialises to JSON and is stored in every artifact's manifest. Each stage's artifact version
hashes only the sections that stage reads (``stage_config``), so changing one stage recomputes
that stage and the ones after it, not the ones before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.config import LossConfig, ModelConfig
from pipeline_tasks.ingest.config import IngestConfig

CONFIG_DIR = Path(os.environ.get("P4D_CONFIG_DIR", Path(__file__).resolve().parents[1] / "configs"))
# The presets, one per configs/<name>.yaml: the type of every flow's ``preset`` parameter, so that a deployment run
# with an unknown preset is refused by Prefect's parameter validation before it starts (a new preset: add its
# YAML file and its name here; tests/pipeline_tasks/test_config_and_inspect.py checks they agree).
Preset = Literal["tiny", "small", "paper", "learn"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenHeadConfig(_Strict):
    """Stage 1: synthetic multi-view head samples."""

    n_identities: int = 256
    views_per_identity: int = 4
    shard_size: int = 16  # identities per Zarr shard (one write, one resume unit)
    seed: int = 1
    backend: str = "procedural"
    p_neutral: float = 0.25  # expression sampling: neutral / one strong expression / mixture
    p_single: float = 0.35
    render_batch: int = 16  # identities per generator call (× views_per_identity images)
    resolution: int | None = None  # image size; None → model.psi.image_resolution
    sharpness: float = 200.0  # procedural generator: SDF → density sharpness
    preview_identities: int = 16  # rows of the contact sheet


class AnalyserSamplesConfig(_Strict):
    """Stage 1b: the store E_mot and the evaluation analyser learn from (``analyser_samples``).

    Unlike stage 1 (one expression per identity), each identity appears with
    ``expressions_per_identity`` samples whose expression, gaze, head pose and cameras are drawn
    independently, so expression cannot be read off identity (or pose)."""

    n_identities: int = 256
    expressions_per_identity: int = 4
    views: int = 2  # cameras per sample (the trainer pairs two views of one sample)
    seed: int = 3  # identity base seed: disjoint from genhead.seed, videos.seed, eval.seed and eval.seed + 1
    shard_size: int = 64  # samples per Zarr shard (one write, one resume unit)
    p_neutral: float = 0.1  # expression sampling: neutral / one strong expression / mixture
    p_single: float = 0.4
    render_batch: int = 16  # samples per generator call (× views images)
    visibility_samples: int = 64  # the store's first samples the expression-visibility measurement renders 10× each


class VideosConfig(_Strict):
    """Synthetic monocular talking-head videos (default input of stage 3)."""

    n_videos: int = 4
    n_frames: int = 32
    fps: int = 25
    seed: int = 100_000  # disjoint from genhead.seed's identities
    camera_motion: bool = True
    crf: int = 18
    resolution: int | None = None  # frame size; None → model.psi.image_resolution
    max_yaw_degrees: float = 30.0  # head sway amplitude bound
    # smiles per second over each clip's smile level (models.genhead.motion); 0.15 as the stage-5 benchmark's
    # trajectories. Ψ learns motion from pairs inside a clip, and at 0.15 a 2-s clip changes its smile half as much
    # as two clips differ (bench/learn/clip-expression-variation-vm-2026-12-06.md)
    smile_events_per_second: float = Field(0.15, ge=0.0)


def cosine_lr(lr: float, step: int, steps: int, final_fraction: float, warmup_steps: int = 0) -> float:
    """Learning rate at ``step`` (0-based) of ``steps``: a linear warm-up from ``lr / warmup_steps`` over
    ``warmup_steps``, then cosine from ``lr`` to ``lr · final_fraction`` (a function of the step: resumes exactly)."""
    import math

    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if final_fraction >= 1.0 or steps <= 1:
        return lr * warm
    t = min(max(step / (steps - 1), 0.0), 1.0)
    return lr * warm * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t)))


class TrainLoopConfig(_Strict):
    """What every training loop of the project reads (pipeline_tasks/training/): optimiser, EMA,
    checkpoint/log cadence, seed. Stage sections add their own fields."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    lr_final_fraction: float = 1.0  # cosine decay of the learning rate to lr × this at the last step (1 → constant)
    ema_halflife_steps: float = 50.0  # EMA of weights; half-life in optimiser steps (0 → no averaging)
    ema_rampup: float | None = 0.05  # half-life ≤ step·rampup early on (official: 0.05); None → off
    checkpoint_every: int = 100  # resumable checkpoints in the artifact's temporary folder
    keep_checkpoints: int = 2  # newest resumable checkpoints kept
    sample_every: int = 100
    log_every: int = 10
    val_every: int = 100
    seed: int = 0
    # the training step's arithmetic: "auto" = bf16 autocast (fp32 master weights, TF32 matmuls) on CUDA, fp32
    # elsewhere; "bf16" also on the CPU (tests, and CPUs with bf16 units); "fp32" everywhere, TF32 off
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # opt-in torch.compile of the network's forward (the renderer, which draws samples from the trainer's generator,
    # stays eager); a graph that fails to compile runs eagerly, and on a CPU without a C++ compiler the inductor
    # backend is skipped with a warning. Measured on the 2-core CPU at tiny: no gain (README "Work and utilisation")
    compile: bool = False
    compile_backend: str = "inductor"


class TrainConfig(TrainLoopConfig):
    """Ψ / Ψ3d training (official Adam eps 1e-5, facts §6)."""

    adam_eps: float = 1e-5
    losses: LossConfig = LossConfig()
    nproc_per_node: int = 1


class Psi3dTrainConfig(TrainConfig):
    """Stage 2a: Ψ3d on GenHead samples."""

    val_identities: int = 16  # held-out identities (the last ones of the store)
    # target views rendered per source per step (≤ views_per_identity − 1): the encoder runs once per source and
    # its tri-plane is supervised from K cameras; K = 1 is one (source, target) pair per sample
    targets_per_source: int = 1
    # probability that a sample's source is its identity's most frontal stored view (else a uniformly drawn one):
    # portraits, real frames and the benchmark's sources are near-frontal, while stored views span ±45° yaw
    frontal_source_p: float = Field(0.0, ge=0.0, le=1.0)
    # probability that a sample's (first) target is its source view itself: reconstruction of the input trains the
    # pixel-aligned path (input → x-y plane → render) that carries the face's detail and expression to every view
    source_view_target_p: float = Field(0.0, ge=0.0, le=1.0)


class MotionEncoderConfig(TrainLoopConfig):
    """Stage 2b: E_mot. ``synthetic``: the analyser CNN trained here on GenHead samples (expression/gaze
    head whose penultimate features are the embedding, of size ``model.psi.motion_dim``, + identity
    head). ``pdfgc``: the published PD-FGC encoder with user-supplied weights (548-d; then
    ``model.psi.motion_dim`` must be 548)."""

    backend: str = "synthetic"  # synthetic | pdfgc
    pdfgc_weights: str | None = None  # path to PD-FGC motion_model.pth (backend pdfgc)
    steps: int = 300
    batch_size: int = 32  # images per step: batch_size/2 samples × 2 views each
    # lr 2e-3 without warm-up left the analyser on its "predict the mean" plateau (held-out R² 0.00 on every
    # coefficient after 1000 steps, learn preset); 1e-3 or 5e-4 after a 100-step warm-up left it by step 250
    lr: float = 1e-3
    lr_warmup_steps: int = 100  # linear warm-up of the learning rate (then cosine to lr × lr_final_fraction)
    lr_final_fraction: float = 0.1
    ema_halflife_steps: float = 20.0
    input_size: int = 64  # analyser input resolution (any image size is resized to it)
    width: int = 32  # base conv width of the analyser
    stem_convs: int = 1  # analyser convolutions at the input's resolution before the first stride
    crop_fraction: float = Field(
        1.0, ge=0.25, le=1.0
    )  # centred crop before the resize (the face, not hair and background)
    identity_dim: int = 64
    identity_weight: float = 0.2  # weight of the supervised-contrastive identity loss
    identity_detached: bool = (
        True  # the identity head learns on the trunk's features without shaping them (motion only)
    )
    temperature: float = 0.1  # of the identity loss
    brightness_jitter: float = 0.1  # per-image gain U(1±j) augmentation
    shift_jitter: float = 0.0  # per-image translation U(±j) of the image width (another face-crop alignment)
    scale_jitter: float = 0.0  # per-image zoom U(1±j)
    blur_jitter: float = 0.0  # per-image Gaussian blur σ ~ U(0, j) pixels (stage 3 feeds E_mot Ψ3d's softer renders)
    mirror: bool = True  # flip half the images left–right, swapping blink L/R and negating eye yaw
    val_identities: int = 16  # held-out identities (the last ones of the store)
    val_max_samples: int = 512  # cap on held-out samples evaluated (all their views are used)
    checkpoint_every: int = 100
    log_every: int = 10
    val_every: int = 100


class Stage3Executor(_Strict):
    """Where stage 3's shards run (not part of its version: every runner writes the same store).

    ``thread``: one shard at a time in the flow's process. ``dask``: a Dask cluster through prefect-dask, the
    one at ``dask_address`` or a local cluster of ``dask_workers`` processes; each worker converts whole shards
    into its own video groups and takes one GPU (worker i → GPU i mod n) when there are GPUs."""

    runner: Literal["thread", "dask"] = "thread"
    dask_address: str | None = None  # e.g. tcp://scheduler:8786; None → a local cluster
    dask_workers: int = Field(2, ge=1)  # local cluster size
    threads_per_worker: int = Field(1, ge=1)  # torch threads per local worker
    retries: int = Field(2, ge=0)  # a failed shard task is retried (it resumes: finished videos are kept)
    retry_delay_s: float = Field(10.0, ge=0)
    # chunks of a video decoded, aligned and segmented ahead, in a thread, while one is rendered (0: in sequence)
    prefetch_chunks: int = Field(1, ge=0)
    # rendered chunks written to Zarr in a thread while the next one renders (0: in sequence)
    write_behind_chunks: int = Field(1, ge=0)
    # a shard task running longer fails with a timeout (then is retried, resuming); None: no limit
    shard_timeout_s: float | None = Field(6 * 3600.0, gt=0)


class PseudoMVConfig(_Strict):
    """Stage 3: monocular videos → pseudo multi-view Zarr groups."""

    views_per_frame: int = 4  # K
    frame_batch: int = 8
    videos: str | None = None  # folder or glob of user videos; None → the synthetic videos
    seed: int = 0
    shard_videos: int = 1  # videos per Prefect task
    shard_frames: int = 16  # frames per Zarr shard
    chunk_frames: int = Field(64, ge=1)  # frames read, rendered and written at a time (memory: one chunk)
    ingest: IngestConfig = IngestConfig()  # decoding (stride, max_frames, fps) and real-video ingestion
    executor: Stage3Executor = Stage3Executor()  # thread or Dask; not versioned


class PsiTrainConfig(TrainConfig):
    """Stage 4: Ψ by cross-view self-reenactment (DESIGN.md §1)."""

    p_target_real: float = 0.8
    p_driving_real: float = 0.1
    cross_attention_lr_mult: float = 2.5
    val_videos: int = 1  # held-out videos (the last ones of the store)


class EvalConfig(_Strict):
    """Stage 5: evaluation on the held-out synthetic benchmark (pipeline_tasks/eval/benchmark_set.py)."""

    n_identities: int = 8
    seed: int = 900_000  # benchmark identities' base seed: disjoint from genhead.seed and videos.seed
    yaw_bins_degrees: list[float] = Field(default_factory=lambda: [-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0])
    trajectory_frames: int = 50  # length of each benchmark identity's talking trajectory (driving expressions)
    driving_yaw_max_degrees: float = 25.0  # driving camera θ_d ~ U(±) per identity
    driving_pitch_max_degrees: float = 10.0
    analyser_seed: int = 7  # the evaluation analyser's seed; must differ from motion_encoder.seed
    analyser_steps: int | None = None  # its training steps; None → motion_encoder.steps
    # its blur augmentation (σ ~ U(0, j) px); None → motion_encoder.blur_jitter. A sharp-trained analyser reads soft
    # renders badly (bench/eval_instrument_floors.py: at 2 px of blur it cannot tell right from wrong expressions)
    analyser_blur_jitter: float | None = None
    probe_identities: int = 32  # pose probe: identities (base seed eval.seed + 1) × views rendered to fit it
    probe_views: int = 4
    lpips_net: str = "alex"
    batch: int = 8  # identities per Ψ forward
    grid_identities: int = 4  # identities shown in the PNG grids
    baselines: bool = True  # also score Ψ driven by the source's own motion (no reenactment)


class DistributedLaunch(_Strict):
    """torchrun across machines for the Ψ3d / Ψ trainers (pipeline_tasks/training/distributed.py). Not part of any
    version: the run on N nodes trains what one node would. The pipeline runs on node 0 (``node_rank`` 0, the
    rendezvous host); it writes the command every other node runs into the trainer's folder (shared storage)."""

    nnodes: int = Field(1, ge=1)
    rdzv_endpoint: str | None = None  # host:port of node 0, reachable from every node; needed when nnodes > 1
    rdzv_backend: str = "static"  # static: node ranks as given (node 0 = this process); c10d: assigned at rendezvous
    rdzv_id: str = "portrait4d"


class PipelineConfig(_Strict):
    preset: str = "tiny"
    device: str = "auto"  # auto | cpu | cuda
    distributed: DistributedLaunch = DistributedLaunch()  # torchrun across nodes; not versioned
    model: ModelConfig = ModelConfig()
    genhead: GenHeadConfig = GenHeadConfig()
    analyser_samples: AnalyserSamplesConfig = AnalyserSamplesConfig()
    videos: VideosConfig = VideosConfig()
    psi3d: Psi3dTrainConfig = Psi3dTrainConfig()
    motion_encoder: MotionEncoderConfig = MotionEncoderConfig()
    pseudo_mv: PseudoMVConfig = PseudoMVConfig()
    psi: PsiTrainConfig = PsiTrainConfig()
    eval: EvalConfig = EvalConfig()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def stage_config(self, *sections: str) -> dict[str, Any]:
        """The part of the resolved config a stage depends on (what its version hashes)."""
        data = self.model_dump(mode="json")
        return {"preset": self.preset, **{s: data[s] for s in sections}}


class ConfigError(ValueError):
    pass


def _set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        if not isinstance(node.get(p, {}), dict):
            raise ConfigError(f"override {source!r}: {p!r} is not a section")
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _is_text_field(key: str) -> bool:
    """Whether ``key`` (dotted) names a ``str`` / ``str | None`` field of :class:`PipelineConfig`.

    Such values (paths, globs, names) are taken verbatim: YAML would read ``*.mp4`` as an alias,
    ``clips #1/x`` as ``clips`` plus a comment, ``~`` as None and a folder named ``1080`` as a number."""
    import typing

    model: Any = PipelineConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        annotation = fields[part].annotation
        if i == len(parts) - 1:
            return annotation is str or set(typing.get_args(annotation)) == {str, type(None)}
        model = annotation
    return False


def parse_overrides(overrides: dict[str, Any] | list[str] | str | None) -> dict[str, Any]:
    """Accept ``{"a.b": 1}``, ``["a.b=1", ...]`` or ``"a.b=1 c=2"``; values are parsed as YAML, except for
    text fields (paths, globs, names: :func:`_is_text_field`), which are taken verbatim ("" is None).
    The one-string form splits on whitespace: pass a value with spaces as a list item."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    items = overrides.split() if isinstance(overrides, str) else list(overrides)
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if raw == "":
            out[key] = None
        elif _is_text_field(key):
            out[key] = raw
        else:
            out[key] = yaml.safe_load(raw)
    return out


def load_config(preset: str = "tiny", overrides: dict[str, Any] | list[str] | str | None = None) -> PipelineConfig:
    """Load ``configs/<preset>.yaml``, apply dotted overrides, validate."""
    path = CONFIG_DIR / f"{preset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"no preset {preset!r}: {path} does not exist (known presets: {', '.join(known)})")
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("preset", preset)
    for key, value in parse_overrides(overrides).items():
        _set_dotted(data, key, value, f"{key}={value}")
    try:
        return PipelineConfig.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError, re-raised with the file named
        raise ConfigError(f"invalid configuration from {path} with overrides {overrides!r}:\n{exc}") from exc
