"""Delivering completion webhooks: arm the event when its job or batch ends, POST it signed, retry with backoff.

Deliveries are `deepfake.deliver_webhook(event_id)` tasks on the interactive lane's front queue, which every
default worker polls first: a delivery takes at most WEBHOOK_TIMEOUT_S, and should not wait behind a queue of
videos. A failed attempt (network error, timeout, any status but 2xx; redirects are not followed) is retried
after WEBHOOK_RETRY_BASE_S × 2^(attempt-1) until WEBHOOK_MAX_ATTEMPTS, then given up (`last_error` says why).
Short waits are the task's own countdown; longer ones, and any message lost on the way, are sent again by the
reaper's pass (`resend_due`) once overdue, so the broker never holds a message for hours.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import urllib3
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import lanes
from shared.db import webhooks as event_store
from shared.db.models import Job, WebhookEvent, utcnow
from shared.settings import Settings
from shared.webhooks import DELIVER_TASK, Target, WebhookUrlError, check_url, encode_body, resolve_host, sign
from worker.context import WorkerContext
from worker.progress import TRANSIENT_ERRORS

log = logging.getLogger(__name__)
USER_AGENT = "deepfake-detector-webhooks/1"
# Waits up to this long are the task's countdown (an ETA message held by a worker); longer ones the reaper's.
COUNTDOWN_MAX_S = 300.0


class DeliveryError(Exception):
    """One attempt did not reach a 2xx answer."""


def delivery_queue(settings: Settings) -> str:
    """The interactive lane's front queue, named from this process's queue base."""
    return lanes.front_queue(lanes.lane_queue(lanes.INTERACTIVE, base=lanes.base_queue(settings.worker_queues)))


def send_delivery(app: Celery, event_id: str, *, settings: Settings, countdown: float | None = None) -> None:
    app.send_task(DELIVER_TASK, args=[event_id], queue=delivery_queue(settings), countdown=countdown)


def announce_ended(job_id: str, *, context: WorkerContext) -> list[str]:
    """After a job's outcome is stored: arm its event and its batch's (if it ended the batch), send them.

    Best effort: if the database or broker is away, the reaper's pass arms and sends them later."""
    settings = context.settings
    if not settings.redis_url:
        return []
    try:
        with context.session_factory() as session:
            armed = event_store.arm_job(session=session, job_id=job_id)
            batch_id = session.scalar(_batch_of(job_id))
            if batch_id is not None:
                armed += event_store.arm_batch(session=session, batch_id=batch_id,
                                               settle_s=settings.webhook_batch_settle_s)
            # Committed before sending: the delivery (on a queue idle workers poll first) must find the
            # event armed. A send that fails after the commit is found overdue and sent by the reaper.
            session.commit()
            if armed:
                with Celery("deepfake-webhooks", broker=settings.redis_url, set_as_current=False) as client:
                    for event_id in armed:
                        send_delivery(client, event_id, settings=settings)
    except (*TRANSIENT_ERRORS, BrokerError, OSError) as exc:
        log.warning("job %s: its webhook was not sent now (%s); the reaper will send it", job_id, exc)
        return []
    return armed


def resend_due(*, app: Celery, session_factory: sessionmaker[Session], settings: Settings) -> list[str]:
    """The reaper's pass: arm events whose job or batch ended unannounced, send those and the overdue ones
    (due for longer than REQUEUE_LOST_AFTER_S); tasks are sent after the commit (one lost on the way is overdue
    at the next pass)."""
    with session_factory() as session:
        armed = event_store.arm_ended(session=session, settle_s=settings.webhook_batch_settle_s)
        overdue_s = settings.requeue_lost_after_s
        lost = [event_id for event_id in event_store.lost_events(session=session, overdue_s=overdue_s)
                if event_store.record_resend(session=session, event_id=event_id, overdue_s=overdue_s)]
        session.commit()  # before sending, as above: a delivery must find what it delivers committed
    for event_id in armed + lost:
        send_delivery(app, event_id, settings=settings)
    return armed + lost


def deliver(event_id: str, *, context: WorkerContext) -> float | None:
    """One attempt at event `event_id`, if it is due; the seconds until the next one when the task should
    retry itself, else None (delivered, given up, not due, or left to the reaper)."""
    settings = context.settings
    lease_s = 2.0 * settings.webhook_timeout_s + 30.0  # past any attempt's connect and read
    try:
        with context.session_factory() as session:
            event = event_store.take_attempt(session=session, event_id=event_id, lease_s=lease_s)
            if event is None:
                return None
            session.expunge(event)
    except TRANSIENT_ERRORS as exc:
        log.warning("webhook %s: the database is unreachable (%s); the reaper will send it again", event_id, exc)
        return None
    try:
        status = post_event(event, settings=settings)
    except DeliveryError as exc:
        return _failed(event, context=context, error=str(exc))
    with context.session_factory() as session:
        event_store.record_delivered(session=session, event_id=event.id, attempt=event.attempts)
    log.info("webhook %s: delivered (attempt %d, HTTP %d)", event.id, event.attempts, status)
    return None


def retry_delay_s(attempt: int, *, base_s: float) -> float:
    """The wait after failed attempt number `attempt` (1-based): base, 2 × base, 4 × base, ..."""
    return base_s * 2 ** (attempt - 1)


def _failed(event: WebhookEvent, *, context: WorkerContext, error: str) -> float | None:
    settings = context.settings
    give_up = event.attempts >= settings.webhook_max_attempts
    delay = retry_delay_s(event.attempts, base_s=settings.webhook_retry_base_s)
    retry_at = None if give_up else utcnow() + timedelta(seconds=delay)
    with context.session_factory() as session:
        event_store.record_failure(session=session, event_id=event.id, attempt=event.attempts, error=error,
                                   retry_at=retry_at)
    if give_up:
        log.warning("webhook %s: attempt %d failed (%s); giving up", event.id, event.attempts, error)
        return None
    log.info("webhook %s: attempt %d failed (%s); next in %.0f s", event.id, event.attempts, error, delay)
    return delay if delay <= COUNTDOWN_MAX_S else None


def post_event(event: WebhookEvent, *, settings: Settings) -> int:
    """POST the event, signed for this attempt, to an address checked now; its 2xx status, else DeliveryError."""
    if not settings.webhook_secret:
        raise DeliveryError("WEBHOOK_SECRET is not set on this worker: the event cannot be signed")
    try:
        target = check_url(event.url, allow_private=settings.webhook_allow_private, resolve=resolve_host)
    except WebhookUrlError as exc:
        raise DeliveryError(str(exc)) from None
    body = encode_body(event.payload or {})
    timestamp = int(time.time())
    headers = {"Host": target.host_header, "Content-Type": "application/json", "User-Agent": USER_AGENT,
               "webhook-id": event.id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret=settings.webhook_secret, event_id=event.id,
                                         timestamp=timestamp, body=body)}
    status = _post(target, body=body, headers=headers, timeout_s=settings.webhook_timeout_s)
    if not 200 <= status < 300:
        raise DeliveryError(f"the receiver answered HTTP {status}")
    return status


def _post(target: Target, *, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """Connect to each checked address in turn (never resolving again) until one answers."""
    error: Exception | None = None
    for address in target.addresses:
        pool = _pool(target, address, timeout_s=timeout_s)
        try:
            response = pool.urlopen("POST", target.path, body=body, headers=headers, redirect=False, retries=False,
                                    assert_same_host=False, preload_content=True)
            return response.status
        except urllib3.exceptions.NewConnectionError as exc:
            error = exc
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(f"the request to {target.host} failed: {_reason(exc)}") from None
        finally:
            pool.close()
    raise DeliveryError(f"cannot connect to {target.host}: {_reason(error)}")


def _pool(target: Target, address: str, *, timeout_s: float) -> Any:
    timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
    if target.scheme == "https":
        # TLS to the checked address, with the URL's host for SNI and certificate verification.
        return urllib3.HTTPSConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED")
    return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)


def _reason(exc: BaseException | None) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason)[:500]


def _batch_of(job_id: str) -> Any:
    return select(Job.batch_id).where(Job.id == job_id)
