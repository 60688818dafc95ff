"""Celery tasks: ids in, domain calls out. The rules live in worker.runner."""
from __future__ import annotations

import logging
import random

from celery import Celery, Task

from worker.celery_app import ANALYZE_TASK
from worker.runner import TransientError, run_job
from worker.context import worker_context

log = logging.getLogger(__name__)
RETRY_BASE_S = 2.0
RETRY_CAP_S = 60.0


def register(app: Celery) -> None:
    """Add the service's tasks to `app` under their stable names."""

    # No retry limit: a transient error means the database or broker is unreachable, and giving
    # up would leave the job queued with no task to run it. The backoff is capped at a minute.
    @app.task(name=ANALYZE_TASK, bind=True, max_retries=None)
    def analyze_job(self: Task, job_id: str) -> str:
        try:
            return run_job(job_id, context=worker_context(self.app.deepfake_settings)).value
        except TransientError as exc:
            delay = retry_delay_s(self.request.retries)
            log.warning("job %s: %s; retry %d in %.0f s", job_id, exc, self.request.retries + 1, delay)
            raise self.retry(exc=exc, countdown=delay)


def retry_delay_s(retries: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2**retries))
