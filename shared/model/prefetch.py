"""Run an iterator in a background thread so decoding overlaps detection and the CNN.

PyAV and torch both release the GIL in their heavy parts, so one decode thread plus the main
thread keep two cores busy. The queue is bounded: at most `depth` items wait, so memory stays flat.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetcher(Iterator[T]):
    def __init__(self, source: Iterable[T], *, depth: int = 2) -> None:
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.busy_s = 0.0  # time the producer spent producing (not waiting on the queue)
        self._thread = threading.Thread(target=self._run, name="frame-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            iterator = iter(self._source)
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                self.busy_s += time.perf_counter() - start
                self._put(item)
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __next__(self) -> T:
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]

    def is_ahead(self) -> bool:
        """Whether the producer is ahead of its consumer: at least half of the queue is filled, so it
        spends its time waiting for room rather than working."""
        return self._queue.qsize() * 2 >= self._queue.maxsize

    def close(self) -> None:
        """Stop the producer and wait for it, so the source can be closed safely."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)
