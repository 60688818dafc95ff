"""Celery tasks: ids in, domain calls out. The rules live in worker.runner."""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable

from celery import Celery, Task

from shared.webhooks import DELIVER_TASK
from worker import webhooks
from worker.celery_app import ANALYZE_TASK
from worker.runner import TransientError, run_job
from worker.context import worker_context

log = logging.getLogger(__name__)
RETRY_BASE_S = 2.0
RETRY_CAP_S = 60.0


class OutageBackoff:
    """One backoff per process for an outage of the database or the broker, shared by its tasks.

    The first task that meets the outage opens it. From then on one task per backoff step probes
    the services (the first to come once the step has passed); the others are put back with a
    countdown past the next probe, without touching the services. The step doubles with each
    failed probe up to the cap, and the first success closes the outage. So an outage costs about
    one failed attempt per step and process, however many messages are waiting.
    """

    def __init__(self, *, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base_s = base_s
        self._cap_s = cap_s
        self._clock = clock
        self._lock = threading.Lock()
        self.failures = 0  # failed probes in the current outage; 0 when there is none
        self._probe_at = 0.0

    def wait_s(self) -> float | None:
        """None: go ahead (no outage, or this task is the probe); else seconds to put the task back for."""
        with self._lock:
            if self.failures == 0:
                return None
            now = self._clock()
            if now >= self._probe_at:
                self._probe_at = now + self._step_s()  # the others wait for this probe's outcome
                return None
            return self._probe_at - now + random.uniform(0, self._step_s())

    def failed(self) -> float:
        """Record a failed attempt; returns its task's countdown (the next probe, unless another task is first)."""
        with self._lock:
            self.failures += 1
            step = self._step_s()
            self._probe_at = self._clock() + step
            return step

    def succeeded(self) -> None:
        with self._lock:
            self.failures = 0
            self._probe_at = 0.0

    def _step_s(self) -> float:
        return min(self._cap_s, self._base_s * 2 ** max(0, self.failures - 1))


def register(app: Celery) -> None:
    """Add the service's tasks to `app` under their stable names."""
    backoff = OutageBackoff()  # one per app and process: a forked child starts with its own

    # No retry limit: a transient error means the database or broker is unreachable, and giving
    # up would leave the job queued with no task to run it. The backoff is capped at a minute.
    @app.task(name=ANALYZE_TASK, bind=True, max_retries=None)
    def analyze_job(self: Task, job_id: str) -> str:
        wait_s = backoff.wait_s()
        if wait_s is not None:
            log.debug("job %s: the database or broker is down; waiting %.0f s for the next probe", job_id, wait_s)
            raise self.retry(countdown=wait_s)
        try:
            outcome = run_job(job_id, context=worker_context(self.app.deepfake_settings)).value
        except TransientError as exc:
            delay = backoff.failed()
            log.warning("job %s: %s; outage probe %d failed, next in %.0f s", job_id, exc, backoff.failures, delay)
            raise self.retry(exc=exc, countdown=delay)
        backoff.succeeded()
        return outcome

    # At least once without a retry limit here: the event's record bounds the attempts (WEBHOOK_MAX_ATTEMPTS).
    @app.task(name=DELIVER_TASK, bind=True, max_retries=None)
    def deliver_webhook(self: Task, event_id: str) -> str:
        retry_in_s = webhooks.deliver(event_id, context=worker_context(self.app.deepfake_settings))
        if retry_in_s is not None:
            raise self.retry(countdown=retry_in_s)
        return "done"
