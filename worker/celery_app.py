"""The Celery application, built from Settings by a factory.

Delivery guarantees (the heartbeat approach): tasks are acknowledged late, one message is
prefetched at a time, and a message whose worker process dies is rejected back to the queue.
A running job writes a heartbeat every few seconds; a reaper thread in every worker's main
process requeues (or, after JOB_MAX_ATTEMPTS, fails with `worker_lost`) jobs whose heartbeat
is older than HEARTBEAT_TIMEOUT_S, so recovery does not wait for the broker's visibility
timeout. Duplicate deliveries are harmless: `claim_job` is a conditional UPDATE.

Requeued jobs go to the front: each consumed queue has a `<queue>.front` queue that the worker
consumes before it (the Redis transport's `priority` queue order), and the reaper sends requeued
jobs there. The web keeps sending new jobs to the queue itself.

`celery -A worker.celery_app worker` works too: the module attribute `app` is built from the
environment on first access, never at import.
"""
from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup

from shared.settings import Settings

ANALYZE_TASK = "deepfake.analyze_job"
# The Redis transport redelivers an unacknowledged message after this long. Jobs may run longer:
# the redelivered copy finds the job running with a fresh heartbeat and does nothing.
VISIBILITY_TIMEOUT_S = 3600
FRONT_QUEUE_SUFFIX = ".front"


class MissingBrokerError(RuntimeError):
    """REDIS_URL is not set, so there is no broker to take tasks from."""


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`: broker = REDIS_URL, no result backend (results live in SQL)."""
    if not settings.redis_url:
        raise MissingBrokerError("REDIS_URL is not set: workers need a Redis broker")
    app = Celery("deepfake", broker=settings.redis_url, set_as_current=False)
    app.conf.update(_config(settings))
    app.deepfake_settings = settings
    from worker import liveness, preload, reaper, tasks

    tasks.register(app)
    _consume_front_queues_first(app)
    reaper.connect(app)
    preload.connect(app)
    liveness.connect(app)
    return app


def _config(settings: Settings) -> dict:
    queue = settings.worker_queues[0]
    return {
        "task_default_queue": queue,
        "task_routes": {ANALYZE_TASK: {"queue": queue}},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # "priority": the worker always polls its queues in the order given (front queues first), where
        # the default round-robin would alternate between a front queue and the queue behind it.
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S, "queue_order_strategy": "priority"},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def front_queue(queue: str) -> str:
    """The queue whose messages a worker of `queue` takes before those of `queue` itself."""
    return f"{queue}{FRONT_QUEUE_SUFFIX}"


def _consume_front_queues_first(app: Celery) -> None:
    """Once the worker knows its queues (`--queues`), put each one's front queue before it."""

    def reorder(sender: Any = None, instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is not app:
            return
        queues = app.amqp.queues
        names = [name for name in queues.consume_from if not name.endswith(FRONT_QUEUE_SUFFIX)]
        queues.select([front_queue(name) for name in names] + names)

    celeryd_after_setup.connect(reorder, weak=False)


def __getattr__(name: str) -> Celery:
    if name == "app":
        global app
        app = make_celery(Settings.from_env())
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
