"""The reaper: a thread in each worker's main process that requeues or fails jobs whose
heartbeat stopped (their worker was killed, or its machine went away).

Several reapers may run at once (one per worker); each requeue is a conditional UPDATE, so only
one of them re-sends a given job's task.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.pool import NullPool

from shared.db import jobs
from shared.db.session import make_engine, make_session_factory
from shared.settings import Settings
from worker.celery_app import ANALYZE_TASK

log = logging.getLogger(__name__)


class Reaper:
    """Runs `reap_once` every `interval_s` until stopped."""

    def __init__(self, app: Celery, settings: Settings, *, interval_s: float | None = None) -> None:
        self.app = app
        self.settings = settings
        self.interval_s = interval_s or reap_interval_s(settings.heartbeat_timeout_s)
        # NullPool: no connection is kept open across a fork of the prefork pool.
        self._engine = make_engine(settings.effective_database_url, poolclass=NullPool)
        self._sessions = make_session_factory(self._engine)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deepfake-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._engine.dispose()

    def reap_once(self) -> list[str]:
        """Requeue or fail the stale jobs now; re-send the requeued ones. Returns their ids.

        The tasks are sent before the requeue commits: if the broker refuses one, nothing is
        committed and the jobs stay stale-running for the next pass, instead of sitting queued
        with no task to run them. A task sent for a job whose requeue then did not commit is still
        honoured: a worker claims a stale running job as it would a queued one.
        """
        with self._sessions() as session:
            requeued = jobs.reap_stale_jobs(session=session, stale_after_s=self.settings.heartbeat_timeout_s,
                                            max_attempts=self.settings.job_max_attempts, commit=False)
            for job_id in requeued:
                self.app.send_task(ANALYZE_TASK, args=[job_id], queue=self.settings.worker_queues[0])
            session.commit()
        for job_id in requeued:
            log.warning("job %s: its worker stopped responding; requeued", job_id)
        return requeued

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.reap_once()
            except Exception:  # the reaper must outlive database and broker outages
                log.warning("reaper pass failed; trying again in %.0fs", self.interval_s, exc_info=True)


def reap_interval_s(heartbeat_timeout_s: float) -> float:
    return max(0.5, min(heartbeat_timeout_s / 3.0, 30.0))


def connect(app: Celery) -> None:
    """Start a reaper when a worker of `app` is ready, stop it when the worker shuts down."""

    def start(sender: Any = None, **_: Any) -> None:
        if _app_of(sender) is not app or getattr(app, "deepfake_reaper", None) is not None:
            return
        app.deepfake_reaper = Reaper(app, app.deepfake_settings)
        app.deepfake_reaper.start()

    def stop(sender: Any = None, **_: Any) -> None:
        reaper = getattr(app, "deepfake_reaper", None)
        if reaper is not None:
            reaper.stop()
            app.deepfake_reaper = None

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)


def _app_of(sender: Any) -> Any:
    return getattr(sender, "app", None)
