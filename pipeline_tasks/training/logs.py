"""Training logs: TensorBoard events (tensorboardX), a JSONL/CSV scalar log, a PNG of the curves,
and a tqdm progress bar.

``scalars.jsonl`` (one ``{"step": s, name: value, ...}`` per line) is the log of record; it is
what ``plot_curves`` and the reports read, so nothing needs TensorBoard installed. ``scalars.csv``
is the same table, wide, rewritten on ``flush``/``close``. On resume, rows after the resumed
step are dropped (they are about to be recomputed) and TensorBoard is told to purge them too.
"""

from __future__ import annotations

import csv
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

from tqdm.auto import tqdm

SCALARS_JSONL = "scalars.jsonl"
SCALARS_CSV = "scalars.csv"


def _to_float(v: Any) -> float:
    if hasattr(v, "item"):
        v = v.item()
    return float(v)


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``scalars.jsonl`` (file or its folder); a torn last line (killed writer) is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / SCALARS_JSONL
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class TrainingLogger:
    """``log(step, loss=…, lr=…)`` → TensorBoard + JSONL; ``close()`` writes the CSV.

    ``resume_step``: the step a resumed run continues from; logged rows with a larger step are dropped.
    """

    def __init__(self, log_dir: str | Path, resume_step: int = 0, tensorboard: bool = True):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.log_dir / SCALARS_JSONL
        rows = [r for r in read_log(self.jsonl) if r.get("step", 0) <= resume_step]
        tmp = self.jsonl.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, self.jsonl)
        self._fh = open(self.jsonl, "a")
        self.writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            # a unique suffix: a resumed run started within the same second must not overwrite the first file
            self.writer = SummaryWriter(
                str(self.log_dir),
                purge_step=resume_step + 1 if resume_step else None,
                filename_suffix=f".{uuid.uuid4().hex[:8]}",
            )

    def log(self, step: int, **scalars: Any) -> None:
        row = {"step": int(step), **{k: _to_float(v) for k, v in scalars.items()}}
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        if self.writer is not None:
            for k, v in row.items():
                if k != "step" and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)

    def log_image(self, tag: str, image_hwc_uint8, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image_hwc_uint8, step, dataformats="HWC")

    def rows(self) -> list[dict[str, float]]:
        return read_log(self.jsonl)

    def flush(self) -> None:
        self._fh.flush()
        write_csv(self.rows(), self.log_dir / SCALARS_CSV)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.flush()
        self._fh.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "TrainingLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_csv(rows: list[Mapping[str, Any]], path: str | Path) -> Path:
    """Wide CSV: a ``step`` column then one column per scalar name (blank where not logged)."""
    path = Path(path)
    names = sorted({k for r in rows for k in r if k != "step"})
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", *names])
        for r in rows:
            w.writerow([r["step"], *(r.get(n, "") for n in names)])
    os.replace(tmp, path)
    return path


def _series(log: Any) -> dict[str, tuple[list[float], list[float]]]:
    """``{name: (steps, values)}`` from rows, a JSONL path/folder, or ``{name: [(step, value), ...]}``."""
    if isinstance(log, (str, Path)):
        log = read_log(log)
    if isinstance(log, Mapping):
        return {k: ([float(s) for s, _ in v], [float(x) for _, x in v]) for k, v in log.items()}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in log:
        for k, v in r.items():
            if k == "step" or v is None:
                continue
            xs, ys = out.setdefault(k, ([], []))
            xs.append(float(r["step"]))
            ys.append(float(v))
    return out


def plot_curves(log: Any, png_path: str | Path, title: str | None = None, names: Iterable[str] | None = None) -> Path:
    """One subplot per scalar (loss curves get a log y-axis when positive) → PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    series = _series(log)
    if names is not None:
        series = {k: series[k] for k in names if k in series}
    if not series:
        raise ValueError(f"plot_curves: no scalars to plot for {png_path}")
    keys = sorted(series)
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    w, h = 4.2 * cols, 3.0 * rows
    # fixed margins in inches, not tight_layout: that measured every tick label of every subplot again and took
    # half of the 4 s a Ψ run's ~45 curves cost
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(w, h),
        squeeze=False,
        gridspec_kw={
            "left": 0.55 / w,
            "right": 1 - 0.15 / w,
            "bottom": 0.45 / h,
            "top": 1 - (0.65 if title else 0.3) / h,
            "wspace": 0.35,
            "hspace": 0.6,
        },
    )
    for ax, k in zip(axes.flat, keys):
        xs, ys = series[k]
        ax.plot(xs, ys, lw=1.2, marker="." if len(xs) < 30 else None)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        finite = [y for y in ys if math.isfinite(y)]
        if "loss" in k and finite and min(finite) > 0 and max(finite) / min(finite) > 20:
            ax.set_yscale("log")
            ax.minorticks_off()
        else:
            ax.locator_params(nbins=5)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / h, va="top")
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def progress_bar(total: int, initial: int = 0, desc: str = "train", disable: bool | None = None, **kwargs: Any) -> tqdm:
    """Steps progress bar; ``initial`` is the resumed step. ``disable=None`` hides it off a terminal
    unless ``P4D_PROGRESS=1``."""
    if disable is None:
        disable = False if os.environ.get("P4D_PROGRESS") == "1" else None
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        disable=disable,
        mininterval=1.0,
        **kwargs,
    )
