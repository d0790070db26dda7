"""pipeline_tasks/data/overlap.py: stage 3's ingestion ahead of rendering and its Zarr writes behind it, in order,
bounded, errors in place, nothing written after a failed block."""

import threading
import time

import pytest

from pipeline_tasks.data.overlap import WriteBehind, prefetched


def test_items_come_in_order_produced_in_another_thread_at_most_depth_ahead():
    produced, threads = [], set()

    def items():
        for i in range(6):
            threads.add(threading.current_thread().name)
            produced.append(i)
            yield i

    got = []
    for x in prefetched(items(), depth=1):
        time.sleep(0.05)  # the consumer is slower: the producer waits on the bounded queue
        assert len(produced) <= x + 3  # this item, one queued, one being put
        got.append(x)
    assert got == list(range(6)) and threads == {"prefetch"}
    assert list(prefetched(iter(range(4)), depth=0)) == [0, 1, 2, 3]


def test_a_producer_error_is_raised_at_its_place_and_leaving_early_stops_the_producer():
    def failing():
        yield 0
        yield 1
        raise ValueError("frame 2 cannot be decoded")

    got = []
    with pytest.raises(ValueError, match="frame 2"):
        for x in prefetched(failing()):
            got.append(x)
    assert got == [0, 1]

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    for x in prefetched(endless(), depth=2):
        if x == 3:
            break
    assert closed.wait(5)  # the generator was closed by its own thread, nothing left running
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())


def test_writes_happen_in_order_in_another_thread_with_at_most_depth_waiting():
    written, threads, lag = [], set(), []

    def write(x):
        time.sleep(0.03)  # the writer is slower: put waits on the bounded queue
        threads.add(threading.current_thread().name)
        written.append(x)

    with WriteBehind(write, depth=2) as w:
        for i in range(8):
            w.put(i)
            lag.append(i + 1 - len(written))  # put but not yet written: queued ones and the one being written
    assert written == list(range(8)) and threads == {"write-behind"}  # all written before the block ends
    assert max(lag) <= 3 and max(lag) >= 2  # bounded, and it did overlap

    seq, where = [], set()
    with WriteBehind(lambda x: seq.append(x) or where.add(threading.current_thread().name), depth=0) as w:
        w.put("a")
        assert seq == ["a"]  # depth 0: at once, here
    assert where == {threading.current_thread().name}


def test_a_failed_write_is_raised_in_the_caller_and_nothing_after_it_is_written():
    written = []

    def write(x):
        if x == 2:
            raise OSError("disk full")
        written.append(x)

    with pytest.raises(OSError, match="disk full"):
        with WriteBehind(write, depth=1) as w:
            for i in range(50):
                w.put(i)
                time.sleep(0.01)
    assert written == [0, 1]
    with pytest.raises(OSError, match="disk full"):  # a failure in the last item is raised on leaving the block
        with WriteBehind(write, depth=1) as w:
            for i in range(3):
                w.put(i)
    assert not any(t.name == "write-behind" and t.is_alive() for t in threading.enumerate())


def test_leaving_the_block_by_an_error_drops_the_queue_and_nothing_writes_after_it():
    written, started = [], threading.Event()

    def write(x):
        started.set()
        time.sleep(0.2)
        written.append(x)

    with pytest.raises(KeyError):
        with WriteBehind(write, depth=3) as w:
            for i in range(4):
                w.put(i)
            assert started.wait(5)
            raise KeyError("render failed")
    after = list(written)
    time.sleep(0.4)
    assert written == after == [0]  # the write in progress finished, the queued three were dropped, none since
    assert not any(t.name == "write-behind" and t.is_alive() for t in threading.enumerate())
