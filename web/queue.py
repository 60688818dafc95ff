"""Enqueue analysis jobs by task name: the web never imports the worker (or torch)."""
from __future__ import annotations

from celery import Celery
from flask import Flask, current_app
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

ANALYZE_TASK = "deepfake.analyze_job"
_EXTENSION = "deepfake.celery"


class EnqueueError(Exception):
    """The broker did not take the message."""


def init_app(app: Flask) -> None:
    """Create the (lazy, not yet connected) Celery client once per app."""
    settings = app.extensions["deepfake.settings"]
    client = Celery("deepfake-web", broker=settings.redis_url, set_as_current=False)
    # Fail the request quickly when the broker is away instead of retrying for long.
    client.conf.broker_transport_options = {"socket_connect_timeout": 2, "socket_timeout": 5}
    client.conf.task_publish_retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
    app.extensions[_EXTENSION] = client


def enqueue_analysis(job_id: str) -> None:
    """Send `deepfake.analyze_job(job_id)` to the analysis queue."""
    if not current_app.extensions["deepfake.settings"].redis_url:
        raise EnqueueError("the job queue is not configured (REDIS_URL is not set)")
    client: Celery = current_app.extensions[_EXTENSION]
    try:
        client.send_task(ANALYZE_TASK, args=[job_id], queue=current_app.config["ANALYSIS_QUEUE"])
    except (OperationalError, RedisError, OSError) as exc:
        raise EnqueueError(f"the job queue is unavailable: {exc}") from exc
