"""What the learning benchmarks (`learn_bench.py`, `learn_motion.py`, `learn_ablation.py`) share: their command
line, the per-stage wall clock and the stages upstream of Ψ."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "learn"


def parse_args(
    doc: str,
    set_example: str,
    argv: list[str] | None = None,
    reuse_psi3d: bool = False,
    seeds: int | None = None,
    reuse_upstream: bool | None = None,
) -> argparse.Namespace:
    """``reuse_psi3d``: the ``--psi3d`` option; ``reuse_upstream`` (default: as ``reuse_psi3d``): the options that
    reuse what Ψ needs besides (analyser store, E_mot, evaluation analyser)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--preset", default="learn")
    ap.add_argument("--set", default="", help=f"dotted overrides, e.g. '{set_example}'")
    if reuse_psi3d:
        ap.add_argument(
            "--psi3d",
            default="",
            help="reuse this Ψ3d artifact (e.g. psi3d@7da23204122c, the one `make "
            "learn-bench` made) instead of resolving stages 1 and 2a from the current code",
        )
    if reuse_psi3d if reuse_upstream is None else reuse_upstream:
        ap.add_argument(
            "--analyser-samples",
            default="",
            help="reuse this analyser store (e.g. analyser_samples@751a02b21311) when its config equals the "
            "preset's, whatever code rendered it: a code change elsewhere does not cost its 12 min again",
        )
        ap.add_argument(
            "--motion-encoder",
            default="",
            help="reuse this E_mot (e.g. motion_encoder@5ebd46229c94) when its config and analyser store equal the "
            "preset's, whatever code trained it: a code change elsewhere does not cost its hour again",
        )
        ap.add_argument(
            "--eval-analyser",
            default="",
            help="reuse this evaluation analyser (eval_analyser@<version>) for stage 5 on the same terms",
        )
    if seeds is not None:
        ap.add_argument("--seeds", type=int, default=seeds, help="training seeds per variant (paired by position)")
    ap.add_argument("--out", default=str(OUT_DIR))
    return ap.parse_args(argv)


def free_stem(out: Path, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, … when a report of that name is already there: a second run on the
    same day and host never overwrites the first (committed reports are results)."""
    candidate, n = stem, 1
    while any(out.glob(f"{candidate}.*")) or any(out.glob(f"{candidate}-*.png")):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def scratch_registry(root: str | Path, spec: str, samples, *more):
    """A registry of its own for one A/B recipe (``root/<recipe>``) with ``samples`` (and ``more`` artifacts) linked
    in, not copied: the main registry stays untouched and a recipe trained before is reused. Returns (registry,
    samples in it)."""
    from storage_schemas.artifacts import ArtifactRegistry

    scratch = ArtifactRegistry(Path(root) / (spec.replace(" ", "_").replace("=", "-") or "preset"))
    for art in (samples, *more):
        link = scratch.root / art.kind / art.version
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(art.path, target_is_directory=True)
    return scratch, scratch.resolve(samples.ref)


class StageClock:
    """``clock.run(name, fn, *args)`` calls ``fn`` and records its wall time under ``name``."""

    def __init__(self):
        self.start = time.time()
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        t = time.time()
        out = fn(*args, **kwargs)
        self.seconds[name] = time.time() - t
        return out

    @property
    def wall(self) -> float:
        return time.time() - self.start


def emit_row(row: dict, log: str | None) -> None:
    """Print one A/B result as a JSON line and append it to ``log`` (when given)."""
    print(json.dumps(row), flush=True)
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")


def reuse_finished(registry, ref: str, schema_version: int, want_config: dict, parents=()):
    """The finished artifact ``ref`` when the config its version hashes equals ``want_config`` and its parents are
    ``parents``: the same recipe on the same inputs, whatever code made it (a code change elsewhere in the
    project changes every version; these artifacts take 40–90 min each on 2 cores)."""
    art = registry.resolve(ref, schema_version=schema_version)
    have = art.manifest.get("config", {})
    if have != want_config:
        diff = sorted(k for k in set(want_config) | set(have) if want_config.get(k) != have.get(k))
        raise SystemExit(f"{art.ref} was made with another config than this preset's (differs in {diff})")
    want_parents = sorted(p.ref for p in parents)
    have_parents = sorted(f"{p['kind']}@{p['version']}" for p in art.manifest.get("parents", []))
    if have_parents != want_parents:
        raise SystemExit(f"{art.ref} was made from {have_parents}, not {want_parents}")
    print(f"reusing {art.ref} ({art.path})", flush=True)
    return art


def reuse_psi3d(cfg, registry, ref: str):
    """A finished Ψ3d trained on ``cfg``'s preset, whatever code made it (≈ 2 h on 2 cores), and the stage-1
    store it was trained on."""
    from pipeline_tasks.train_psi3d import SCHEMA_VERSION

    psi3d = registry.resolve(ref, schema_version=SCHEMA_VERSION)
    if psi3d.manifest.get("config", {}).get("preset", cfg.preset) != cfg.preset:
        trained_on = psi3d.manifest["config"]["preset"]
        raise SystemExit(f"{psi3d.ref} was trained on preset {trained_on!r}, not {cfg.preset!r}")
    print(f"reusing {psi3d.ref} ({psi3d.path})", flush=True)
    return psi3d


def reuse_analyser_samples(cfg, registry, ref: str):
    """A finished analyser store whose config (what its version hashes from the preset) equals ``cfg``'s: the
    same samples, whatever code rendered them."""
    from pipeline_tasks.analyser_samples import SCHEMA_VERSION, artifact_config

    return reuse_finished(registry, ref, SCHEMA_VERSION, artifact_config(cfg))


def reuse_motion_encoder(cfg, registry, ref: str, samples):
    """A finished E_mot trained with ``cfg``'s recipe on ``samples``."""
    from pipeline_tasks.train_motion_encoder import SCHEMA_VERSION, stage_config

    return reuse_finished(registry, ref, SCHEMA_VERSION, stage_config(cfg), [samples])


def reuse_eval_analyser(cfg, registry, ref: str, samples):
    """A finished evaluation analyser (stage 5's instrument) trained with ``cfg``'s recipe on ``samples``."""
    from pipeline_tasks.evaluate import ANALYSER_SCHEMA_VERSION, analyser_stage_config

    return reuse_finished(registry, ref, ANALYSER_SCHEMA_VERSION, analyser_stage_config(cfg), [samples])


def motion_upstream(cfg, registry, args, clock: StageClock) -> dict:
    """Stages 1–3 for Ψ: Ψ3d (or the finished one ``args.psi3d`` names, whatever code made it: a code change
    does not cost 80 min again), the analyser store (or ``args.analyser_samples``), E_mot (or
    ``args.motion_encoder``), the synthetic videos and the pseudo multi-view store; and the evaluation analyser
    ``args.eval_analyser`` names, if any. Every stage already complete for these inputs is reused."""
    from pipeline_tasks import pseudo_mv as pmv_stage
    from pipeline_tasks.analyser_samples import run_analyser_samples_stage
    from pipeline_tasks.genhead_samples import run_genhead_stage
    from pipeline_tasks.synthetic_videos import run_videos_stage
    from pipeline_tasks.train_motion_encoder import train_motion_encoder
    from pipeline_tasks.train_psi3d import train_psi3d

    timed = clock.run
    if args.psi3d:
        psi3d = reuse_psi3d(cfg, registry, args.psi3d)
    else:
        samples = timed("genhead_samples", run_genhead_stage, cfg, registry)
        psi3d = timed("psi3d", train_psi3d, cfg, samples, registry)
    if getattr(args, "analyser_samples", ""):
        an = reuse_analyser_samples(cfg, registry, args.analyser_samples)
    else:
        an = timed("analyser_samples", run_analyser_samples_stage, cfg, registry)
    if getattr(args, "motion_encoder", ""):
        me = reuse_motion_encoder(cfg, registry, args.motion_encoder, an)
    else:
        me = timed("motion_encoder", train_motion_encoder, cfg, an, registry)
    ea = reuse_eval_analyser(cfg, registry, args.eval_analyser, an) if getattr(args, "eval_analyser", "") else None
    vids = timed("synthetic_videos", run_videos_stage, cfg, registry)
    pmv = timed("pseudo_mv", pmv_stage.convert, cfg, psi3d, me, vids, registry)
    return {
        "psi3d": psi3d,
        "analyser_samples": an,
        "motion_encoder": me,
        "eval_analyser": ea,  # None: stage 5 resolves (or trains) it from the current code
        "synthetic_videos": vids,
        "pseudo_mv": pmv,
    }


def reuse_command(make_target: str, args) -> str:
    """The make command line that reproduces a run with these arguments."""
    return (
        f"make {make_target}"
        + (f" SET='{args.set}'" if args.set else "")
        + (f" PSI3D={args.psi3d}" if getattr(args, "psi3d", "") else "")
        + (f" ANALYSER={args.analyser_samples}" if getattr(args, "analyser_samples", "") else "")
        + (f" EMOT={args.motion_encoder}" if getattr(args, "motion_encoder", "") else "")
        + (f" EVAL_ANALYSER={args.eval_analyser}" if getattr(args, "eval_analyser", "") else "")
        + (f" SEEDS={args.seeds}" if getattr(args, "seeds", None) else "")
    )


def stage5_reenactment(psi_ref: str, analyser_ref: str, preset: str = "learn"):
    """Stage 5's cross-identity reenactment set-up for one Ψ, as the per-coefficient and sharpness diagnostics read
    it: ``cfg``, the ``scorer`` (evaluation analyser ``analyser_ref`` + pose probe), the benchmark ``run`` and its
    reenactment ``re`` (truths, motions, cameras), ``keep`` (the non-0° rows of ``run.flat`` images) and the Ψ3d
    that Ψ started from (``psi3d``). CPU; the registry is ``P4D_HOME``'s."""
    import os
    from types import SimpleNamespace

    import torch

    import models  # noqa: F401  (the torchvision shim before torchvision)
    from pipeline_tasks import stages
    from pipeline_tasks.config import load_config
    from pipeline_tasks.eval.instruments import Scorer, fit_pose_probe, get_benchmark
    from pipeline_tasks.eval.scoring import SOURCE_BIN
    from pipeline_tasks.evaluate import _Reenactment, _Run
    from storage_schemas.artifacts import ArtifactRegistry

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = load_config(preset)
    registry = ArtifactRegistry()
    psi_art = registry.resolve(psi_ref)
    ancestors = {}
    for a in registry.ancestors(psi_art):
        ancestors.setdefault(a.kind, a)
    analyser = stages.load(registry.resolve(analyser_ref), device="cpu")
    probe, _ = fit_pose_probe(analyser, cfg, "cpu")
    scorer = Scorer(analyser, probe, cfg.eval.lpips_net, "cpu")
    bench = get_benchmark(cfg)
    net = stages.load(psi_art, model_cfg=cfg.model, device="cpu")
    run = _Run(cfg, bench, bench.render(), scorer, net, "cpu")
    return SimpleNamespace(
        cfg=cfg,
        scorer=scorer,
        run=run,
        re=_Reenactment(run, ancestors["motion_encoder"]),
        keep=torch.tensor([lab != SOURCE_BIN for lab in run.bin_labels]).repeat(run.n),
        psi3d=stages.load(ancestors["psi3d"], model_cfg=cfg.model, device="cpu"),
    )


def stage5_reenactment_cli(doc: str, argv: list[str] | None = None, extra=None):
    """``<script> psi@<v> eval_analyser@<v> [--preset learn]`` → (args, :func:`stage5_reenactment`'s namespace);
    ``extra(parser)`` adds a script's own options."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("psi")
    ap.add_argument("analyser")
    ap.add_argument("--preset", default="learn")
    if extra:
        extra(ap)
    args = ap.parse_args(argv)
    return args, stage5_reenactment(args.psi, args.analyser, args.preset)
