"""The Celery application, built from Settings by a factory.

Delivery guarantees (the heartbeat approach): tasks are acknowledged late, one message is
prefetched at a time, and a message whose worker process dies is rejected back to the queue.
A running job writes a heartbeat every few seconds; a reaper thread in every worker's main
process requeues (or, after JOB_MAX_ATTEMPTS, fails with `worker_lost`) jobs whose heartbeat
is older than HEARTBEAT_TIMEOUT_S, so recovery does not wait for the broker's visibility
timeout. Duplicate deliveries are harmless: `claim_job` is a conditional UPDATE.

`celery -A worker.celery_app worker` works too: the module attribute `app` is built from the
environment on first access, never at import.
"""
from __future__ import annotations

from celery import Celery

from shared.settings import Settings

ANALYZE_TASK = "deepfake.analyze_job"
# The Redis transport redelivers an unacknowledged message after this long. Jobs may run longer:
# the redelivered copy finds the job running with a fresh heartbeat and does nothing.
VISIBILITY_TIMEOUT_S = 3600


class MissingBrokerError(RuntimeError):
    """REDIS_URL is not set, so there is no broker to take tasks from."""


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`: broker = REDIS_URL, no result backend (results live in SQL)."""
    if not settings.redis_url:
        raise MissingBrokerError("REDIS_URL is not set: workers need a Redis broker")
    app = Celery("deepfake", broker=settings.redis_url, set_as_current=False)
    app.conf.update(_config(settings))
    app.deepfake_settings = settings
    from worker import preload, reaper, tasks

    tasks.register(app)
    reaper.connect(app)
    preload.connect(app)
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
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def __getattr__(name: str) -> Celery:
    if name == "app":
        global app
        app = make_celery(Settings.from_env())
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
