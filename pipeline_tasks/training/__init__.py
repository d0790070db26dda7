"""Training utilities shared by every trainer of the project (Ψ3d, Ψ, the motion analyser):
EMA of weights, resumable checkpoints, deterministic sampling, logs/curves, image grids, progress."""

from pipeline_tasks.training.checkpoint import (
    CheckpointError,
    TrainingState,
    atomic_torch_save,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    restore_rng_state,
)
from pipeline_tasks.training.device import resolve_device, seed_everything
from pipeline_tasks.training.ema import EMA
from pipeline_tasks.training.grid import image_grid, save_image_grid, to_uint8_hwc
from pipeline_tasks.training.logs import TrainingLogger, plot_curves, progress_bar, read_log, write_csv
from pipeline_tasks.training.sampler import SeededSampler

__all__ = [
    "CheckpointError",
    "EMA",
    "SeededSampler",
    "TrainingLogger",
    "TrainingState",
    "atomic_torch_save",
    "capture_rng_state",
    "checkpoint_path",
    "image_grid",
    "latest_checkpoint",
    "list_checkpoints",
    "plot_curves",
    "progress_bar",
    "read_log",
    "resolve_device",
    "restore_rng_state",
    "save_image_grid",
    "seed_everything",
    "to_uint8_hwc",
    "write_csv",
]
