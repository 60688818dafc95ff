import sys
import threading

import pytest

from shared.model.prefetch import Prefetcher
from tests.conftest import wait_for


def test_yields_every_item_in_order():
    assert list(Prefetcher(iter(range(50)), depth=2)) == list(range(50))


def test_producer_errors_reach_the_consumer():
    def broken():
        yield 1
        raise RuntimeError("decoder broke")

    items = Prefetcher(broken())
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="decoder broke"):
        next(items)


def _item_being_put(prefetcher: Prefetcher) -> object:
    """The item the producer thread is waiting to queue, or _NOT_PUTTING when it is elsewhere."""
    frame = sys._current_frames().get(prefetcher._thread.ident)
    while frame is not None:
        if frame.f_code is Prefetcher._put.__code__:
            return frame.f_locals["item"]
        frame = frame.f_back
    return _NOT_PUTTING


_NOT_PUTTING = object()


def test_the_queue_is_bounded_and_close_stops_the_producer():
    produced = []
    asked_for_3 = threading.Event()

    def source():
        for i in range(1000):
            produced.append(i)
            if i == 3:
                asked_for_3.set()
            yield i

    items = Prefetcher(source(), depth=2)
    assert next(items) == 0
    assert asked_for_3.wait(timeout=60), f"the producer stopped early: {produced}"
    # Item 3 cannot go in while 1 and 2 wait in the full queue; once the producer is stuck there,
    # it has asked the source for nothing more (one consumed, two queued, one waiting to be put).
    wait_for(lambda: items._queue.full() and _item_being_put(items) == 3, timeout=60, interval=0.001,
             what="the producer to block on a full queue with item 3")
    assert produced == [0, 1, 2, 3]
    items.close()
    assert not items._thread.is_alive()
    assert produced == [0, 1, 2, 3]  # closing took nothing more from the source


def test_is_ahead_while_the_queue_is_at_least_half_full():
    release = threading.Event()

    def source():
        yield 0
        release.wait(timeout=60)  # the producer "works" on item 1 until released
        yield from range(1, 100)

    items = Prefetcher(source(), depth=4)
    assert next(items) == 0
    assert not items.is_ahead()  # its consumer has taken everything: the producer is working
    release.set()
    wait_for(items._queue.full, timeout=60, interval=0.001, what="the queue to fill")
    assert items.is_ahead()  # four items wait: it is waiting for room, not working
    items.close()
