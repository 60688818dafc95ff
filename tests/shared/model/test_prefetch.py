import threading

import pytest

from shared.model.prefetch import Prefetcher


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


def test_the_queue_is_bounded_and_close_stops_the_producer():
    produced = []
    gate = threading.Event()

    def source():
        for i in range(1000):
            produced.append(i)
            yield i

    items = Prefetcher(source(), depth=2)
    assert next(items) == 0
    gate.wait(0.3)
    assert len(produced) <= 4  # one consumed, two queued, one waiting to be put
    items.close()
    assert not items._thread.is_alive()
