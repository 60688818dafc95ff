"""Progress, heartbeat and cancellation of one running job.

The engine reports after each batch; writes reach the database at most every PROGRESS_EVERY_S
(windows in between are kept and written with the next one). A background thread refreshes the
heartbeat even while a long batch runs, and picks up cancellation requests; the engine asks
`should_stop()` between batches.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.db import jobs
from shared.db.models import Job
from shared.storage import StorageUnavailableError

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 2.0
TRANSIENT_ERRORS = (OperationalError, RedisConnectionError, RedisTimeoutError, StorageUnavailableError)


class ProgressReporter:
    """Use as a context manager around the analysis; pass `on_progress` and `should_stop` to it."""

    def __init__(self, session_factory: sessionmaker[Session], *, job_id: str, attempt: int,
                 heartbeat_every_s: float) -> None:
        self._sessions = session_factory
        self._job_id = job_id
        self._attempt = attempt
        self._heartbeat_every_s = heartbeat_every_s
        self._pending: list[Any] = []
        self._last_write = 0.0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
        self.superseded = False

    def __enter__(self) -> "ProgressReporter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def should_stop(self) -> bool:
        """True once cancellation was requested or the job stopped being this attempt's."""
        return self._stop.is_set()

    def on_progress(self, progress: Any) -> None:
        """The engine's callback: keep the new windows, write at most every PROGRESS_EVERY_S."""
        self._pending.extend(progress.windows)
        final = progress.frames_total and progress.frames_done >= progress.frames_total
        if not final and time.monotonic() - self._last_write < PROGRESS_EVERY_S:
            return
        try:
            with self._lock, self._sessions() as session:
                stop = jobs.record_progress(session=session, job_id=self._job_id,
                                            frames_done=progress.frames_done, frames_total=progress.frames_total,
                                            windows=self._pending, attempt=self._attempt)
        except TRANSIENT_ERRORS:  # keep the windows for the next write; the analysis goes on
            log.warning("job %s: progress not written", self._job_id, exc_info=True)
            return
        self._pending = []
        self._last_write = time.monotonic()
        self._note(stop)

    def _beat(self) -> None:
        while not self._done.wait(self._heartbeat_every_s):
            try:
                with self._lock, self._sessions() as session:
                    stop = jobs.heartbeat(session=session, job_id=self._job_id, attempt=self._attempt)
            except TRANSIENT_ERRORS:  # a database blip must not end the analysis; the next beat tries again
                log.warning("job %s: heartbeat failed", self._job_id, exc_info=True)
                continue
            self._note(stop)

    def _note(self, stop: bool) -> None:
        if not stop:
            return
        with self._sessions() as session:
            job = session.get(Job, self._job_id)
            self.superseded = job is None or job.status != "running" or job.attempts != self._attempt
        self._stop.set()
