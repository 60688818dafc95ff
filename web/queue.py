"""Enqueue analysis jobs by task name: the web never imports the worker (or torch).

Each job goes to the queue of its lane (shared.lanes), named from the base of ANALYSIS_QUEUE (the
first of WORKER_QUEUES, "analysis" by default): interactive `analysis`, batch `analysis.batch`,
gpu `analysis.gpu`.
"""
from __future__ import annotations

import redis
from celery import Celery
from flask import Flask, current_app
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from shared import lanes, liveness
from shared.webhooks import DELIVER_TASK

ANALYZE_TASK = lanes.ANALYZE_TASK
_EXTENSION = "deepfake.celery"
_LIVENESS_CLIENT = "deepfake.liveness_redis"
# Looking for a live GPU worker must not hold an upload up for long: past this, the job stays on the CPU.
LIVENESS_TIMEOUT_S = 1.0


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
    if settings.redis_url:  # a lazy pool: it connects on the first look for a GPU worker
        app.extensions[_LIVENESS_CLIENT] = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=LIVENESS_TIMEOUT_S, socket_timeout=LIVENESS_TIMEOUT_S)


def lane_queue(lane: str) -> str:
    """The queue this web app sends `lane`'s jobs to (UnknownLaneError for an unknown lane)."""
    return lanes.lane_queue(lane, base=lanes.split_queue(current_app.config["ANALYSIS_QUEUE"])[0])


def enqueue_analysis(job_id: str, *, lane: str = lanes.INTERACTIVE) -> None:
    """Send `deepfake.analyze_job(job_id)` to the queue of `lane` (the lane recorded on the job)."""
    queue = lane_queue(lane)
    if not current_app.extensions["deepfake.settings"].redis_url:
        raise EnqueueError("the job queue is not configured (REDIS_URL is not set)")
    client: Celery = current_app.extensions[_EXTENSION]
    try:
        client.send_task(ANALYZE_TASK, args=[job_id], queue=queue)
    except (OperationalError, RedisError, OSError) as exc:
        raise EnqueueError(f"the job queue is unavailable: {exc}") from exc


def enqueue_webhook(event_id: str) -> None:
    """Send `deepfake.deliver_webhook(event_id)` to the interactive lane's front queue, as workers do."""
    if not current_app.extensions["deepfake.settings"].redis_url:
        raise EnqueueError("the job queue is not configured (REDIS_URL is not set)")
    client: Celery = current_app.extensions[_EXTENSION]
    try:
        client.send_task(DELIVER_TASK, args=[event_id], queue=lanes.front_queue(lane_queue(lanes.INTERACTIVE)))
    except (OperationalError, RedisError, OSError) as exc:
        raise EnqueueError(f"the job queue is unavailable: {exc}") from exc


def choose_lane(*, duration_s: float | None, batch: bool) -> str:
    """The lane of a new job: gpu for a video of at least GPU_LANE_MIN_DURATION_S while a GPU worker is
    alive, else batch for a batch item and interactive for a single upload."""
    lane = lanes.BATCH if batch else lanes.INTERACTIVE
    threshold = current_app.extensions["deepfake.settings"].gpu_lane_min_duration_s
    if duration_s is not None and duration_s >= threshold and gpu_worker_alive():
        return lanes.GPU
    return lane


def gpu_worker_alive() -> bool:
    """Whether a worker of the gpu lane beat lately; an unreachable Redis counts as none."""
    client: redis.Redis | None = current_app.extensions.get(_LIVENESS_CLIENT)
    if client is None:
        return False
    try:
        return bool(liveness.alive_workers(client, queue=lane_queue(lanes.GPU)))
    except RedisError:
        return False
