"""Celery tasks: ids in, domain calls out. The rules live in worker.runner."""
from __future__ import annotations

import logging
import random

from celery import Celery, Task

from worker.celery_app import ANALYZE_TASK
from worker.runner import TransientError, run_job
from worker.context import worker_context

log = logging.getLogger(__name__)
MAX_RETRIES = 5
RETRY_BASE_S = 2.0
RETRY_CAP_S = 60.0


def register(app: Celery) -> None:
    """Add the service's tasks to `app` under their stable names."""

    @app.task(name=ANALYZE_TASK, bind=True, max_retries=MAX_RETRIES)
    def analyze_job(self: Task, job_id: str) -> str:
        try:
            return run_job(job_id, context=worker_context(self.app.deepfake_settings)).value
        except TransientError as exc:
            if self.request.retries >= self.max_retries:
                raise
            log.warning("job %s: %s; retrying", job_id, exc)
            raise self.retry(exc=exc, countdown=retry_delay_s(self.request.retries))


def retry_delay_s(retries: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2**retries))
