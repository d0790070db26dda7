"""`make learn-ablation`: the v2 ablation on the `learn` preset, on the data and networks of `make learn-bench-motion`.

Ψ trained on pseudo multi-view data (the method: target replaced by the real frame with p = 0.8, driving input
with p = 0.1) against the same budget on monocular frames only (``psi.p_target_real = psi.p_driving_real = 1``),
same Ψ3d, E_mot and store, ``--seeds`` training seeds each (paired by position), every Ψ evaluated by stage 5 on
the same held-out benchmark. The comparison is stage 5's ``ablation`` artifact (pipeline_tasks/ablation.py: per
task and yaw bin, both means, the paired difference and a 95% interval from a bootstrap over seeds and
identities). Unlike `make ablation`, which runs the whole pipeline for its preset, this reuses a finished Ψ3d
(``--psi3d``) and analyser store (``--analyser-samples``) across code changes, as `make learn-bench-motion` does.

Output: ``bench/learn/ablation-<host>-<date>.md`` (the machine, the command, the times, then the artifact's report)
and its plot. Usage: python bench/learn_ablation.py [--seeds 3] [--set "psi.steps=500"] [--psi3d psi3d@…]
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from learn_common import StageClock, free_stem, motion_upstream, parse_args, reuse_command  # noqa: E402
from run import machine  # noqa: E402  (bench/run.py: host, CPU, torch)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "psi.steps=500", argv, reuse_psi3d=True, seeds=3)
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be ≥ 1, got {args.seeds}")

    import models  # noqa: F401  (torchvision shim first)
    from pipeline_tasks.ablation import MONOCULAR_OVERRIDES, compare_evals
    from pipeline_tasks.config import load_config
    from pipeline_tasks.evaluate import evaluate
    from pipeline_tasks.train_psi import train_psi
    from storage_schemas.artifacts import ArtifactRegistry

    base = args.set.split() if args.set else []
    cfg = load_config(args.preset, base or None)
    registry = ArtifactRegistry()
    clock = StageClock()
    up = motion_upstream(cfg, registry, args, clock)
    method, baseline = [], []
    for i in range(args.seeds):
        seed = [f"psi.seed={cfg.psi.seed + i}"]
        for name, extra, evals in (("method", [], method), ("monocular", MONOCULAR_OVERRIDES, baseline)):
            c = load_config(args.preset, base + extra + seed)
            psi = clock.run(
                f"psi_{name}_{i}", train_psi, c, up["pseudo_mv"], up["psi3d"], up["motion_encoder"], registry
            )
            # every Ψ on one benchmark: stage 5 with the base config, not the variant's
            evals.append(clock.run(f"eval_{name}_{i}", evaluate, cfg, psi, registry, analyser=up["eval_analyser"]))
            print(f"seed {i} {name}: {psi.ref} → {evals[-1].ref}", flush=True)
    art = compare_evals(cfg, method, baseline, registry)

    date = dt.date.today().isoformat()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = free_stem(out, f"ablation-{socket.gethostname()}-{date}")
    plot = art.path / "plots" / "ablation_vs_yaw.png"
    if plot.is_file():
        shutil.copy(plot, out / f"{stem}-vs-yaw.png")
    m = machine()
    head = [
        f"# The v2 ablation on the `{cfg.preset}` preset ({date})",
        "",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}, host `{m['host']}`, CUDA: {m['cuda']}.",
        "",
        f"Command: `{reuse_command('learn-ablation', args)}`. Wall time {clock.wall / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in clock.seconds.items())
        + ").",
        "",
        f"Upstream: {', '.join(f'`{a.ref}`' for a in up.values())}. Comparison: `{art.ref}`.",
        "",
    ]
    report = (art.path / "report.md").read_text()
    body = report.split("\n", 1)[1] if report.startswith("#") else report  # its title gives way to ours
    body = body.replace("plots/ablation_vs_yaw.png", f"{stem}-vs-yaw.png")
    (out / f"{stem}.md").write_text("\n".join(head) + body)
    print(f"learn-ablation: {out / (stem + '.md')} ({art.ref})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
