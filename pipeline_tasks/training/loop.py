"""The resumable step loop shared by the Ψ3d and Ψ trainers.

It owns the schedule (log / validate / sample / checkpoint every N steps), the progress bar and
resumption: on start it restores the latest checkpoint in ``ckpt_dir`` (models, EMA, optimisers,
sampler, every RNG), so a run killed at any point continues from its last checkpoint and reaches
the same weights as an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pipeline_tasks.config import TrainConfig
from pipeline_tasks.run_progress import RunProgress
from pipeline_tasks.training.checkpoint import TrainingState
from pipeline_tasks.training.logs import TrainingLogger, progress_bar


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def run_loop(
    train_cfg: TrainConfig,
    state: TrainingState,
    ckpt_dir: Path,
    logger_dir: Path,
    step_fn: Callable[[int], dict[str, float]],
    val_fn: Callable[[int], dict[str, float]] | None = None,
    sample_fn: Callable[[int], None] | None = None,
    desc: str = "train",
    stop_after: int | None = None,
    is_main: bool = True,
) -> tuple[int, list[dict[str, float]]]:
    """Run steps ``resume..train_cfg.steps``; returns (steps done, logged rows).

    ``step_fn(step)`` does one optimisation step (``step`` counts from 0) and returns scalars.
    ``stop_after`` (tests) stops after that many steps in this call, as a kill would, right after
    a checkpoint if one is due. ``is_main=False`` (DDP ranks > 0, pipeline_tasks/training/distributed.py):
    the same steps from the same checkpoint, but no logs, validation, samples or checkpoints.
    """
    total = train_cfg.steps
    start = state.resume(ckpt_dir)
    if not is_main:
        end = total if stop_after is None else min(total, start + stop_after)
        for step in range(start, end):
            step_fn(step)
        return end, []
    logger = TrainingLogger(logger_dir, resume_step=start)
    progress = RunProgress(f"{desc}-training", f"{desc} training steps", total)
    done_here = 0
    with logger, progress_bar(total, initial=start, desc=desc) as bar:
        for step in range(start, total):
            scalars = step_fn(step)
            n = step + 1
            if _due(n, train_cfg.log_every, total):
                logger.log(n, **scalars)
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(scalars.items())[:3]})
            if val_fn is not None and _due(n, train_cfg.val_every, total):
                logger.log(n, **{f"val_{k}": v for k, v in val_fn(n).items()})
            if sample_fn is not None and _due(n, train_cfg.sample_every, total):
                sample_fn(n)
            if _due(n, train_cfg.checkpoint_every, total):
                state.save(ckpt_dir, n, keep=train_cfg.keep_checkpoints)
            bar.update(1)
            progress.update(n)
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                logger.flush()
                return n, logger.rows()
        logger.flush()
        return total, logger.rows()


CHECKPOINT = "checkpoint.pt"  # the published (EMA) weights of a trained artifact


def publish_trained(w, model_cfg, model, rows, title: str, metrics: dict, counts: dict, extra: dict) -> None:
    """The payload of a finished trainer: EMA checkpoint, curves, metrics; resumable state dropped."""
    import json
    import shutil

    from models.checkpoints import save_checkpoint
    from pipeline_tasks.training.logs import plot_curves

    save_checkpoint(w.path / CHECKPOINT, model_cfg, {"psi": model}, extra=extra)
    shutil.rmtree(w.path / "checkpoints", ignore_errors=True)  # resumable state is not part of the payload
    plot_curves(rows, w.path / "curves.png", title=title)
    (w.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    w.metrics.update(metrics)
    w.counts.update(counts)
