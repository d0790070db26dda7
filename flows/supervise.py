"""Ctrl-C or SIGTERM stops a pipeline run within seconds, leaving a state the next run resumes from.

Why a supervisor: inside a flow, Prefect turns SIGTERM into an exception that its engine then tries
to report to the API; with the temporary API gone (it dies with the terminal or the job), a run was
seen to keep computing for minutes. So ``python -m flows.pipeline`` runs the flow in a child
process in its own process group and stays outside it: on a signal it forwards the signal to the
group, waits ``P4D_STOP_GRACE_S`` seconds (default 10), then kills the group (the flow, its
threads, the temporary Prefect server). Every stage is safe against a kill at any moment (atomic
artifacts, checkpoints and per-video groups; tests/storage_schemas, tests/pipeline_tasks), so
the next run resumes where this one stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

CHILD_ENV = "P4D_SUPERVISED_CHILD"
GRACE_ENV = "P4D_STOP_GRACE_S"


def is_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def run_supervised(module: str, argv: list[str]) -> int:
    """Run ``python -m module argv...`` as a child process group; return its exit code (128 + signal if stopped)."""
    grace = float(os.environ.get(GRACE_ENV, "10"))
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *argv], env={**os.environ, CHILD_ENV: "1"}, start_new_session=True
    )
    stop = {"signal": None, "at": 0.0}

    def on_signal(signum, _frame):
        if stop["signal"] is None:
            stop["signal"], stop["at"] = signum, time.monotonic()
            print(
                f"\n{signal.Signals(signum).name}: stopping (up to {grace:.0f} s); the next run resumes from here",
                file=sys.stderr,
                flush=True,
            )
        _signal_group(proc.pid, signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stop["signal"] is not None and time.monotonic() - stop["at"] > grace:
                    _signal_group(proc.pid, signal.SIGKILL)
        if stop["signal"] is not None:
            _signal_group(proc.pid, signal.SIGKILL)  # anything the flow left behind in its group (a Prefect server)
            return 128 + int(stop["signal"])
        return code
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
