"""pipeline_tasks/data/prefetch.py: stage 3's ingestion ahead of rendering, in order, bounded, errors in place."""

import threading
import time

import pytest

from pipeline_tasks.data.prefetch import prefetched


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
