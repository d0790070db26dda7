"""Multi-GPU training of the Ψ trainers: ``torchrun`` + DistributedDataParallel (DESIGN.md §8).

With ``nproc_per_node > 1`` a trainer's build callback (the parent process, which holds the
artifact's temporary folder) calls :func:`launch`: it writes the resolved config and the parents'
refs to ``w.path/ddp_spec.json``, runs

    python -m torch.distributed.run --standalone --nproc_per_node N -m pipeline_tasks.training.distributed <stage> ...

appending every run's output to ``w.path/torchrun.log``, waits, and copies what rank 0 reported
(metrics, counts) into the writer, so ``run_once`` commits the artifact as usual.

Each worker (:func:`main`) runs the stage's ``StageSpec.train`` with a :class:`DistContext`:

* device ``cuda:LOCAL_RANK`` (backend nccl) when the config resolves to CUDA, else CPU (gloo);
* the network is wrapped in ``DistributedDataParallel``: gradients are averaged over ranks.
  No ``find_unused_parameters``: Ψ3d's cross-attention is frozen (``requires_grad=False``), which
  DDP ignores, and every trainable parameter gets a gradient each step;
* batch split: every rank runs the same sampler with the same seed, draws the *global* batch
  (``batch_size``, and its per-sample random choices) exactly as a single process would, and
  keeps the slice ``[rank::world_size]`` (``batch_size`` must divide evenly). The union of the
  ranks' slices is the single-process batch, and the sampler and render generator stay identical
  on every rank, so all ranks resume from rank 0's checkpoint (ranks' ray jitter is therefore
  the same per batch position; an accepted simplification);
* the discriminator (when the adversarial term is on) is not DDP-wrapped — its update is skipped
  on a rank whose slice holds no real target — so its weights are averaged over ranks after each
  step instead (each rank keeps its own Adam moments);
* only rank 0 validates, samples, logs, checkpoints and writes the final ``checkpoint.pt`` /
  ``metrics.json``; after the loop the ranks check that they hold identical weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline_tasks.training.device import resolve_device

SPEC = "ddp_spec.json"
RESULT = "ddp_result.json"
LOG = "torchrun.log"
OTHER_NODES = "torchrun-other-nodes.txt"  # the commands nodes 1..N-1 run (distributed.nnodes > 1)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class DistContext:
    """This process's place in the run; the default is a single process (every hook a no-op)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def device(self, spec: str) -> torch.device:
        dev = resolve_device(spec)
        if self.enabled and dev.type == "cuda":
            dev = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(dev)
        return dev

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {self.world_size} DDP processes")

    def shard(self, *arrays: np.ndarray):
        """This rank's slice ``[rank::world_size]`` of arrays drawn for the global batch."""
        if not self.enabled:
            return arrays if len(arrays) > 1 else arrays[0]
        out = tuple(a[self.rank :: self.world_size] for a in arrays)
        return out if len(out) > 1 else out[0]

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel (itself in a single process); call it for the forward."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev = next(module.parameters()).device
        return DDP(module, device_ids=[dev] if dev.type == "cuda" else None)

    @torch.no_grad()
    def average_parameters(self, module: torch.nn.Module | None) -> None:
        """Average ``module``'s parameters over ranks (a module trained outside DDP, e.g. D)."""
        if not self.enabled or module is None:
            return
        import torch.distributed as dist

        for p in module.parameters():
            dist.all_reduce(p.data, op=dist.ReduceOp.SUM)
            p.data.div_(self.world_size)

    @torch.no_grad()
    def check_in_sync(self, module: torch.nn.Module) -> None:
        """Raise unless every rank holds the same weights (per-tensor float64 sums, compared exactly)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        sums = torch.stack([p.detach().double().sum() for p in module.state_dict().values() if p.is_floating_point()])
        gathered = [torch.empty_like(sums) for _ in range(self.world_size)]
        dist.all_gather(gathered, sums)
        bad = [r for r, s in enumerate(gathered) if not torch.equal(s, gathered[0])]
        if bad:
            raise RuntimeError(f"DDP ranks {bad} hold weights that differ from rank 0's")


SINGLE = DistContext()


def launch(stage: str, cfg, parents: list, w, stop_after: int | None, nproc: int) -> None:
    """Run ``stage``'s trainer in ``nproc`` torchrun workers on ``w.path``; fill ``w`` from rank 0's report."""
    spec = {
        "config": cfg.model_dump(mode="json"),
        "registry": str(w.registry.root),
        "parents": [p.ref for p in parents],
        "stop_after": stop_after,
    }
    (w.path / SPEC).write_text(json.dumps(spec, indent=2))
    (w.path / RESULT).unlink(missing_ok=True)
    d = cfg.distributed
    cmd = torchrun_command(stage, w.path, nproc, d.nnodes, 0, d.rdzv_endpoint, d.rdzv_backend, d.rdzv_id)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log_path = w.path / LOG
    if d.nnodes > 1:  # every other node runs its own torchrun on this folder (shared storage)
        lines = [
            shlex.join(torchrun_command(stage, w.path, nproc, d.nnodes, r, d.rdzv_endpoint, d.rdzv_backend, d.rdzv_id))
            for r in range(1, d.nnodes)
        ]
        (w.path / OTHER_NODES).write_text("\n".join(lines) + "\n")
        print(
            f"{stage}: waiting for {d.nnodes - 1} other node(s) at {d.rdzv_endpoint}; on node r run line r of "
            f"{w.path / OTHER_NODES}:\n" + "\n".join(lines),
            flush=True,
        )
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT).returncode
    result_path = w.path / RESULT
    if rc != 0 or not result_path.exists():
        raise RuntimeError(f"{stage}: torchrun ({nproc} processes) exited with code {rc}; see {log_path}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    (w.path / SPEC).unlink(missing_ok=True)
    (w.path / OTHER_NODES).unlink(missing_ok=True)
    if "interrupted" in result:
        raise InterruptedError(result["interrupted"])
    w.metrics.update(result["metrics"])
    w.counts.update(result["counts"])
    w.extra.update(result["extra"])


def torchrun_command(
    stage: str,
    workdir: Path,
    nproc: int,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    rdzv_backend: str = "static",
    rdzv_id: str = "portrait4d",
) -> list[str]:
    """The torchrun command of one node: ``--standalone`` on one node, else the usual rendezvous flags
    (``--nnodes --node_rank --rdzv_backend --rdzv_endpoint --rdzv_id``)."""
    if nnodes == 1:
        where = ["--standalone"]
    else:
        if not rdzv_endpoint:
            raise ValueError(
                f"distributed.nnodes={nnodes} needs distributed.rdzv_endpoint=<host:port of node 0, reachable from "
                "every node>"
            )
        where = [
            f"--nnodes={nnodes}",
            f"--node_rank={node_rank}",
            f"--rdzv_backend={rdzv_backend}",
            f"--rdzv_endpoint={rdzv_endpoint}",
            f"--rdzv_id={rdzv_id}",
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
        f"--nproc_per_node={nproc}",
        "-m",
        "pipeline_tasks.training.distributed",
        stage,
        "--workdir",
        str(workdir),
    ]


# The stages a worker can run: their ``StageSpec.train``, found through the stage registry by kind.
TRAINERS = ("psi3d", "psi")


@dataclass
class _WorkerWriter:
    """What ``_train`` uses of an ArtifactWriter; the parent commits the real one."""

    path: Path
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> None:
    """torchrun worker entry point."""
    import torch.distributed as dist

    from pipeline_tasks import stages
    from pipeline_tasks.config import PipelineConfig
    from storage_schemas.artifacts import ArtifactRegistry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=sorted(TRAINERS))
    ap.add_argument("--workdir", type=Path, required=True)
    args = ap.parse_args(argv)
    spec = json.loads((args.workdir / SPEC).read_text())
    cfg = PipelineConfig.model_validate(spec["config"])
    registry = ArtifactRegistry(spec["registry"])
    parents = [registry.resolve(ref) for ref in spec["parents"]]

    ctx = DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    backend = "nccl" if ctx.device(cfg.device).type == "cuda" else "gloo"
    dist.init_process_group(backend)
    w = _WorkerWriter(args.workdir)
    train = stages.spec(args.stage).train
    try:
        train(cfg, *parents, w, spec["stop_after"], ddp=ctx)
        result = {"metrics": w.metrics, "counts": w.counts, "extra": {**w.extra, "ddp_world_size": ctx.world_size}}
    except InterruptedError as exc:  # stop_after (tests): the folder stays resumable
        result = {"interrupted": str(exc)}
    if ctx.is_main:
        tmp = args.workdir / f".{RESULT}.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, args.workdir / RESULT)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
