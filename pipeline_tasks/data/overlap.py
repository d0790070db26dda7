"""Stage 3's three phases side by side instead of in sequence: chunk k+1 of a video is decoded, aligned and
segmented in one background thread (:func:`prefetched`) and chunk k-1 written to Zarr in another
(:class:`WriteBehind`) while chunk k renders. Both queues are bounded: memory is ``depth`` chunks more each,
whatever the video's length; errors surface in the caller's thread, at their place in the sequence."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items`` produced by a background thread at most ``depth`` items ahead (``depth`` 0: in this thread, as
    given). An exception raised by the producer is raised here at its place in the sequence; leaving the loop early
    (or an exception in it) stops the producer before this generator closes."""
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()


class WriteBehind:
    """Calls ``write(item)`` for each :meth:`put` item in one background thread, in order, at most ``depth``
    items waiting (``depth`` 0: in the caller's thread, at once).

    Used as a context manager. A clean exit waits for every item to be written (:meth:`close`); an exit by an
    exception drops what is still queued and waits for the item being written, so that nothing writes after the
    block (a failed video's partial group can then be discarded safely). A failed write is raised by the next
    :meth:`put` or by :meth:`close`; items after it are not written."""

    def __init__(self, write: Callable[[T], object], depth: int = 1, name: str = "write-behind"):
        self._write, self._depth, self._error = write, depth, None
        self._q: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._worker = None
        if depth > 0:
            self._worker = threading.Thread(target=self._run, name=name, daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is _DONE or self._stop.is_set():
                    return
                if self._error is None:
                    self._write(item)
            except BaseException as exc:  # noqa: BLE001 — raised in the caller's thread by put/close
                self._error = exc
            finally:
                self._q.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Queue ``item`` (blocks while ``depth`` items wait); raises an earlier write's error instead."""
        self._raise_error()
        if self._worker is None:
            self._write(item)
            return
        while True:
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise_error()
                if not self._worker.is_alive():
                    raise RuntimeError("the write-behind thread has stopped")

    def close(self) -> None:
        """Wait until every queued item is written, stop the thread; raises a failed write's error."""
        if self._worker is not None:
            self._q.put(_DONE)
            self._worker.join()
            self._worker = None
        self._raise_error()

    def abandon(self) -> None:
        """Drop what is still queued, wait for the write in progress, stop the thread (errors are not raised)."""
        if self._worker is not None:
            self._stop.set()
            while True:  # make room for the sentinel whatever the queue holds
                try:
                    self._q.get_nowait()
                    self._q.task_done()
                except queue.Empty:
                    break
            self._q.put(_DONE)
            self._worker.join()
            self._worker = None

    def __enter__(self) -> "WriteBehind":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()
