"""Progress of long work as a Prefect progress artifact (0–100 %), beside the terminal's progress bar.

Training steps and stage-3 frames report here; the artifact belongs to the flow or task run the work happens in,
so the Prefect UI shows how far a run is. Outside a Prefect run (a stage called from Python, a torchrun worker)
it does nothing and never starts a Prefect server.
"""

from __future__ import annotations

import logging
import re
import time

log = logging.getLogger("portrait4d")


class RunProgress:
    """``update(done)`` at most every ``every_s`` seconds (and always at ``total``)."""

    def __init__(self, key: str, description: str, total: int, every_s: float = 5.0):
        self.total, self.every_s, self.description = max(1, int(total)), every_s, description
        self.key = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
        self.artifact_id = None
        self._last = 0.0
        if not _in_prefect_run():
            return
        from prefect.artifacts import create_progress_artifact

        try:
            self.artifact_id = create_progress_artifact(0.0, key=self.key, description=description)
        except Exception as exc:  # noqa: BLE001 — progress is a report: the work never fails for it
            log.warning("no Prefect progress artifact for %s: %s", self.key, exc)

    def update(self, done: int, note: str | None = None) -> None:
        now = time.monotonic()
        if self.artifact_id is None or (done < self.total and now - self._last < self.every_s):
            return
        self._last = now
        from prefect.artifacts import update_progress_artifact

        try:
            desc = f"{self.description}: {done}/{self.total}" + (f" ({note})" if note else "")
            update_progress_artifact(self.artifact_id, 100.0 * min(done, self.total) / self.total, description=desc)
        except Exception as exc:  # noqa: BLE001
            log.warning("Prefect progress artifact %s not updated: %s", self.key, exc)
            self.artifact_id = None


def _in_prefect_run() -> bool:
    import sys

    if "prefect" not in sys.modules:  # a plain Python or torchrun process: no run to report to
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None
