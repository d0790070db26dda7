"""`make bench`: run every ``bench_*`` function in bench/cases/*.py, print a table, save JSON and a Markdown summary.

Figures belong to the machine they were measured on; the JSON records it (host, CPU, GPU, torch).
Usage: python bench/run.py [--only SUBSTRING[,SUBSTRING…]] [--out bench/]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import socket
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

import models  # noqa: E402,F401  (torchvision shim first)

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    info = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_cases(only: str | None):
    for path in sorted((HERE / "cases").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"bench_cases_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(dir(mod)):
            if name.startswith("bench_") and callable(getattr(mod, name)):
                full = f"{path.stem}.{name}"
                if only is None or any(part and part in full for part in only.split(",")):
                    yield full, getattr(mod, name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only cases whose name contains this (several: comma-separated)")
    ap.add_argument("--out", default=str(HERE), help="folder for results-<host>-<date>.json")
    args = ap.parse_args(argv)
    results, failures = [], []
    for full, fn in load_cases(args.only):
        t0 = time.perf_counter()
        try:
            rows = fn()
        except Exception as exc:  # a failing case is reported, the others still run
            failures.append({"case": full, "error": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
            continue
        for row in rows if isinstance(rows, list) else [rows]:
            results.append({"case": full, "seconds": round(time.perf_counter() - t0, 2), **row})
        print(f"  done {full} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    info = machine()
    print(
        f"\nmachine: {info['host']} | {info['cpu']} x{info['cpu_count']} | torch {info['torch']}"
        + (f" | {info.get('gpu')}" if info.get("gpu") else " | no GPU")
    )
    width = max([len(r["name"]) for r in results] + [10])
    print(f"{'benchmark'.ljust(width)}  {'value':>12}  unit          peak MiB  device")
    for r in results:
        peak = r.get("peak_mem_mb")
        print(
            f"{r['name'].ljust(width)}  {r['value']:>12.4g}  {r['unit']:<12}  "
            f"{'' if peak is None else f'{peak:8.0f}':>8}  {r.get('device', '')}"
        )
    for f in failures:
        print(f"FAILED {f['case']}: {f['error']}")
    out = Path(args.out) / f"results-{info['host']}-{dt.date.today().isoformat()}.json"
    n = 1
    while out.exists():  # a second run on the same day and host never overwrites the first (committed results)
        n += 1
        out = out.with_name(f"results-{info['host']}-{dt.date.today().isoformat()}-{n}.json")
    out.write_text(
        json.dumps(
            {
                "machine": info,
                "date": dt.datetime.now().isoformat(timespec="seconds"),
                "results": results,
                "failures": failures,
            },
            indent=2,
        )
    )
    summary = out.with_suffix(".md")
    summary.write_text(markdown_summary(info, results, failures))
    print(f"\nwritten {out} and {summary.name}")
    return 1 if failures else 0


def markdown_summary(info: dict, results: list[dict], failures: list[dict]) -> str:
    """The results as a Markdown table under the machine and the date (committed beside the JSON)."""
    gpu = info.get("gpu") or "no GPU"
    lines = [
        f"# Benchmarks on {info['host']}, {dt.datetime.now().isoformat(timespec='minutes')}",
        "",
        f"{info['cpu']} × {info['cpu_count']} (torch threads {info['torch_threads']}), {gpu}, torch {info['torch']}, "
        f"{info['platform']}. Figures belong to this machine; ratios were measured within this run.",
        "",
        "| case | benchmark | value | unit | peak MiB | device | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peak = r.get("peak_mem_mb")
        note = str(r.get("note", "")).replace("|", "/")
        name = r["name"].replace("|", "/")
        lines.append(
            f"| {r['case'].split('.')[0]} | {name} | {r['value']:.4g} | {r['unit']} | "
            f"{'' if peak is None else f'{peak:.0f}'} | {r.get('device', '')} | {note} |"
        )
    for f in failures:
        lines.append(f"\n**Failed** `{f['case']}`: {f['error']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
