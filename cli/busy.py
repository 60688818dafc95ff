"""A service that answers 429 asks the client to wait, not to give up on the file.

The web answers 429 `rate_limited` (over RATE_LIMIT_PER_MINUTE, with `Retry-After`: the seconds to the
next one-minute window) and 429 `too_many_active_jobs` (over MAX_ACTIVE_JOBS_PER_OWNER, without one:
when jobs end is not known). `deepfake submit` and `deepfake batch --server` then wait and send the same
file again, saying so on stderr, within the bounds below; past them the file fails as before.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Mapping, TypeVar

from cli.errors import CommandError

BUSY_STATUS = 429
# Without Retry-After (too_many_active_jobs): ask again soon, since any job that ends frees a slot.
DEFAULT_WAIT_S = 10
# One wait is at most a rate window: a longer Retry-After is a reason to ask again, not to sleep longer.
MAX_WAIT_S = 60
# The longest one file waits in all before it is reported as refused (a service busy for this long is
# not going to take it soon).
PATIENCE_S = 600

T = TypeVar("T")


class ServiceBusyError(CommandError):
    """429 from the service: `code` (rate_limited, too_many_active_jobs) and the wait it asked for, if any."""

    def __init__(self, message: str, *, code: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    def wait_s(self) -> float:
        """How long to wait before asking again: Retry-After, else DEFAULT_WAIT_S, at most MAX_WAIT_S."""
        asked = DEFAULT_WAIT_S if self.retry_after_s is None else self.retry_after_s
        return float(min(max(asked, 1), MAX_WAIT_S))


def busy_error(status: int, headers: Mapping[str, str], body: object) -> ServiceBusyError | None:
    """The ServiceBusyError of a 429 answer (its JSON error's code and message, its Retry-After), else None."""
    if status != BUSY_STATUS:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    return ServiceBusyError(str(error.get("message") or "too many requests"), code=str(error.get("code") or "busy"),
                            retry_after_s=retry_after_s(headers.get("Retry-After")))


def retry_after_s(raw: str | None) -> float | None:
    """Retry-After as seconds (the delay form; the service sends no dates), None when absent or unreadable."""
    try:
        seconds = float((raw or "").strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def pause(seconds: float) -> None:
    """Wait out a 429 (its own function, so a test can stand in for the minute passing)."""
    time.sleep(seconds)


def send_patiently(send: Callable[[], T], *, label: str, patience_s: float | None = None) -> T:
    """`send()`, sent again after each 429 once the wait the service asked for is over, for up to
    `patience_s` (PATIENCE_S) of waiting in all; the last ServiceBusyError past that."""
    patience_s = PATIENCE_S if patience_s is None else patience_s
    waited = 0.0
    while True:
        try:
            return send()
        except ServiceBusyError as busy:
            wait = busy.wait_s()
            if waited + wait > patience_s:
                raise
            print(f"deepfake: {label}: the service is busy [{busy.code}]: {busy.message}; "
                  f"sending it again in {wait:g} s", file=sys.stderr, flush=True)
            pause(wait)
            waited += wait
