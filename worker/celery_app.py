"""The Celery application, built from Settings by a factory.

Delivery guarantees (the heartbeat approach): tasks are acknowledged late, one message is
prefetched at a time, and a message whose worker process dies is rejected back to the queue.
A running job writes a heartbeat every few seconds; a reaper thread in every worker's main
process requeues (or, after JOB_MAX_ATTEMPTS, fails with `worker_lost`) jobs whose heartbeat
is older than HEARTBEAT_TIMEOUT_S, so recovery does not wait for the broker's visibility
timeout. Duplicate deliveries are harmless: `claim_job` is a conditional UPDATE.

Lanes (shared.lanes): interactive uploads, batch items and long videos for GPUs each have a queue.
A worker polls its queues in a fixed order, the Redis transport's `priority` queue order (one
BRPOP over all of them, in that order, so the first non-empty queue wins): every front queue first,
then gpu, interactive, batch. A CPU worker consumes interactive + batch by default, so an
interactive upload never waits behind a batch; a CUDA worker also gpu, first.

Requeued jobs go to the front: each consumed queue has a `<queue>.front` queue, and the reaper
sends requeued jobs there. The web keeps sending new jobs to the lane queues themselves.

`celery -A worker.celery_app worker` works too: the module attribute `app` is built from the
environment on first access, never at import.
"""
from __future__ import annotations

import logging
import re
import warnings
from typing import Any

from celery import Celery
from celery.exceptions import SecurityWarning
from celery.signals import celeryd_after_setup

from shared import lanes
from shared.settings import Settings
from shared.webhooks import DELIVER_TASK

ANALYZE_TASK = lanes.ANALYZE_TASK
# The Redis transport redelivers an unacknowledged message after this long. Jobs may run longer:
# the redelivered copy finds the job running with a fresh heartbeat and does nothing.
VISIBILITY_TIMEOUT_S = 3600
FRONT_QUEUE_SUFFIX = lanes.FRONT_QUEUE_SUFFIX


# Output a user of the service cannot act on, dropped by message where the worker starts (every other
# warning and log line stays): torch's notice that a CPU machine has no CUDA runtime (about compiling C++
# extensions, which the engine never does); NNCF's int8 calibration progress bars, which the worker's stdout
# redirection would log as WARNINGs; both also as they arrive through that redirection.
UNACTIONABLE_LINES: dict[str, tuple[str, ...]] = {
    "torch.utils.cpp_extension": (r"No CUDA runtime is found",),
    "celery.redirected": (r"No CUDA runtime is found", r"━+.*\b\d{1,3}%"),
}
# Celery's advice against running a worker as root is about accepting pickled messages; this app accepts JSON
# only (see _config), and a container or `serve` on a personal machine may run as root.
ROOT_ADVICE = r"You're running the worker with superuser privileges"


class DropLines(logging.Filter):
    """Drops the records whose message matches one of `patterns`."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = [re.compile(pattern) for pattern in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in self.patterns)


def drop_unactionable_output() -> None:
    """Install the filters above (once per process; forked pool processes inherit them)."""
    for name, patterns in UNACTIONABLE_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, DropLines) for existing in logger.filters):
            logger.addFilter(DropLines(patterns))
    warnings.filterwarnings("ignore", message=ROOT_ADVICE, category=SecurityWarning)


class MissingBrokerError(RuntimeError):
    """REDIS_URL is not set, so there is no broker to take tasks from."""


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`: broker = REDIS_URL, no result backend (results live in SQL)."""
    if not settings.redis_url:
        raise MissingBrokerError("REDIS_URL is not set: workers need a Redis broker")
    drop_unactionable_output()
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
    # Tasks sent without a queue (none of ours) go to the interactive lane.
    queue = lanes.lane_queue(lanes.INTERACTIVE, base=lanes.base_queue(settings.worker_queues))
    return {
        "task_default_queue": queue,
        # Webhook deliveries (worker.webhooks) are short: the interactive lane's front queue, polled first.
        "task_routes": {ANALYZE_TASK: {"queue": queue}, DELIVER_TASK: {"queue": lanes.front_queue(queue)}},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # "priority": the worker always polls its queues in the order given (front queues first, then the
        # lanes), where the default round-robin would alternate between them.
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S, "queue_order_strategy": "priority"},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


front_queue = lanes.front_queue


def _consume_front_queues_first(app: Celery) -> None:
    """Once the worker knows its queues (`--queues`), poll them in shared.lanes.consume_order: the front
    queues first, then the lanes in priority order."""

    def reorder(sender: Any = None, instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is not app:
            return
        queues = app.amqp.queues
        queues.select(lanes.consume_order(list(queues.consume_from)))

    celeryd_after_setup.connect(reorder, weak=False)


def __getattr__(name: str) -> Celery:
    if name == "app":
        global app
        app = make_celery(Settings.from_env())
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
