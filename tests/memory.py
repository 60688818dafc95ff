"""Memory growth as the tests measure it: anonymous memory, compared within one test.

RSS also counts library code and mapped files as they are paged in on first use, which differs from
machine to machine and from one library build to another. Anonymous memory (RssAnon in
/proc/self/status: the heap, arrays, buffers) is what the code under test allocates and holds, so the
tests bound its growth, relative to the size of their own input, and compare a long input with a short
one measured the same way.
"""
from __future__ import annotations

import threading

_STATUS = "/proc/self/status"


def anonymous_memory() -> int:
    """This process's resident anonymous memory, in bytes."""
    with open(_STATUS) as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{_STATUS} has no RssAnon line (Linux 4.5 or later needed)")


class PeakAnonymousMemory:
    """The highest anonymous-memory growth above the level at entry, while a block runs.

    A background thread samples every millisecond, and `sample()` adds a reading at a point the test
    chooses: a buffer held for longer than that is seen.
    """

    def __init__(self) -> None:
        self.baseline = self.peak = anonymous_memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> None:
        self.peak = max(self.peak, anonymous_memory())

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.sample()

    def __enter__(self) -> "PeakAnonymousMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def growth(self) -> int:
        """Bytes above the level at entry, at the highest reading."""
        return self.peak - self.baseline
