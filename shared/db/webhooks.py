"""Keyword-only data access for completion webhooks (`webhook_events`): at least once, under one id.

An event's life: `subscribe` (at submission, in the job's or batch's transaction) → `arm_*` when the job
or the whole batch ended (the payload is written and the event is due) → `take_attempt` (a conditional
UPDATE: attempts + 1 and a lease, so of two copies of a delivery message only one sends) →
`record_delivered`, or `record_failure` with the next attempt's time (None: given up). A due event whose
message was lost is found by `lost_events` and sent again once (`record_resend`, a conditional UPDATE).
Arming and resending flush; the caller sends the tasks, then commits. Attempt records commit.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from shared.db.models import Job, JobStatus, WebhookEvent, utcnow
from shared.webhooks import batch_event, job_event, new_event_id

TERMINAL = [status.value for status in JobStatus if status.is_terminal]
# A delivery message may run a moment before its event's time on another machine's clock.
DUE_SLACK_S = 2.0


def subscribe(*, session: Session, url: str, job_id: str | None = None, batch_id: str | None = None) -> WebhookEvent:
    """Record that the end of this job (or batch) is to be sent to `url` (flushed, not committed)."""
    event = WebhookEvent(id=new_event_id(), job_id=job_id, batch_id=batch_id, url=url, created_at=utcnow(),
                         attempts=0)
    session.add(event)
    session.flush()
    return event


def arm_job(*, session: Session, job_id: str) -> list[str]:
    """Arm the ended job's event, if it has one not armed yet; returns the ids armed (flushed only)."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or not job.job_status.is_terminal:
        return []
    payload = job_event(job_id=job.id, status=job.status, verdict=job.verdict, fake_probability=job.fake_probability,
                        error_code=job.error_code, error_message=job.error_message,
                        timestamp=(job.finished_at or utcnow()).isoformat())
    return _arm(session, WebhookEvent.job_id == job_id, payload)


def arm_batch(*, session: Session, batch_id: str, settle_s: float) -> list[str]:
    """Arm the batch's event once every item ended and none was added for `settle_s` (flushed only)."""
    rows = session.execute(select(Job.status, Job.verdict, Job.fake_probability, Job.created_at)
                           .where(Job.batch_id == batch_id)).all()
    if not rows or any(status not in TERMINAL for status, *_ in rows):
        return []
    if max(created for *_, created in rows) > utcnow() - timedelta(seconds=settle_s):
        return []
    counts: dict[str, int] = {}
    verdicts: dict[str, int] = {}
    for status, verdict, _, _ in rows:
        counts[status] = counts.get(status, 0) + 1
        if verdict is not None:
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
    probabilities = [p for _, _, p, _ in rows if p is not None]
    payload = batch_event(batch_id=batch_id, counts=counts, verdicts=verdicts,
                          fake_probability=max(probabilities) if probabilities else None,
                          timestamp=utcnow().isoformat())
    return _arm(session, WebhookEvent.batch_id == batch_id, payload)


def arm_ended(*, session: Session, settle_s: float, limit: int = 500) -> list[str]:
    """Arm every event whose job or batch ended without being armed (a job ended by the web's cancel, the
    reaper, or a worker that died before arming). Flushed only."""
    unarmed = and_(WebhookEvent.payload.is_(None), WebhookEvent.delivered_at.is_(None))
    job_ids = session.scalars(select(WebhookEvent.job_id).join(Job, Job.id == WebhookEvent.job_id)
                              .where(unarmed, Job.status.in_(TERMINAL)).limit(limit)).all()
    # Only batches that have items and none still queued or running: open or empty batches (which may stay
    # so for a long time) must not fill the `limit` and starve the ended ones.
    items = select(Job.id).where(Job.batch_id == WebhookEvent.batch_id)
    batch_ids = session.scalars(select(WebhookEvent.batch_id).where(
        unarmed, WebhookEvent.batch_id.is_not(None), items.exists(),
        ~items.where(Job.status.not_in(TERMINAL)).exists()).limit(limit)).all()
    armed = [event for job_id in job_ids for event in arm_job(session=session, job_id=job_id)]
    return armed + [event for batch_id in batch_ids for event in arm_batch(session=session, batch_id=batch_id,
                                                                           settle_s=settle_s)]


def take_attempt(*, session: Session, event_id: str, lease_s: float) -> WebhookEvent | None:
    """Start an attempt of a due, undelivered event (attempts + 1; due again after `lease_s` if this attempt
    is lost) and commit; the event, or None when it is not due (delivered, given up, or taken elsewhere)."""
    now = utcnow()
    due = and_(WebhookEvent.id == event_id, WebhookEvent.delivered_at.is_(None), WebhookEvent.payload.is_not(None),
               WebhookEvent.next_attempt_at <= now + timedelta(seconds=DUE_SLACK_S))
    taken = _update(session, due, attempts=WebhookEvent.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=lease_s))
    session.commit()
    if not taken:
        return None
    return session.get(WebhookEvent, event_id, populate_existing=True)


def record_delivered(*, session: Session, event_id: str, attempt: int) -> bool:
    """The receiver answered 2xx: never sent again. Commits."""
    done = _update(session, _attempt(event_id, attempt), delivered_at=utcnow(), next_attempt_at=None, last_error=None)
    session.commit()
    return done


def record_failure(*, session: Session, event_id: str, attempt: int, error: str,
                   retry_at: datetime | None) -> bool:
    """The attempt failed: due again at `retry_at`, or given up (None). Commits."""
    done = _update(session, _attempt(event_id, attempt), last_error=error[:2000], next_attempt_at=retry_at)
    session.commit()
    return done


def lost_events(*, session: Session, overdue_s: float, limit: int = 500) -> list[str]:
    """Undelivered events due more than `overdue_s` ago: their message (or the worker holding it) was lost."""
    query = select(WebhookEvent.id).where(_overdue(utcnow() - timedelta(seconds=overdue_s)))
    return list(session.scalars(query.order_by(WebhookEvent.next_attempt_at).limit(limit)))


def record_resend(*, session: Session, event_id: str, overdue_s: float) -> bool:
    """Make an overdue event due now, if it still is overdue (one reaper wins). Flushed only."""
    now = utcnow()
    return _update(session, and_(WebhookEvent.id == event_id, _overdue(now - timedelta(seconds=overdue_s))),
                   next_attempt_at=now)


def pending_count(*, session: Session) -> int:
    """Events armed and neither delivered nor given up."""
    return int(session.scalar(select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.delivered_at.is_(None), WebhookEvent.next_attempt_at.is_not(None))) or 0)


def _arm(session: Session, subject: ColumnElement[bool], payload: dict[str, Any]) -> list[str]:
    ids = session.scalars(select(WebhookEvent.id).where(subject, WebhookEvent.payload.is_(None))).all()
    now = utcnow()
    return [event_id for event_id in ids
            if _update(session, and_(WebhookEvent.id == event_id, WebhookEvent.payload.is_(None)),
                       payload=payload, next_attempt_at=now)]


def _attempt(event_id: str, attempt: int) -> ColumnElement[bool]:
    return and_(WebhookEvent.id == event_id, WebhookEvent.attempts == attempt, WebhookEvent.delivered_at.is_(None))


def _overdue(cutoff: datetime) -> ColumnElement[bool]:
    return and_(WebhookEvent.delivered_at.is_(None), WebhookEvent.payload.is_not(None),
                WebhookEvent.next_attempt_at < cutoff)


def _update(session: Session, where: ColumnElement[bool], **values: Any) -> bool:
    statement = update(WebhookEvent).where(where).values(**values).execution_options(synchronize_session=False)
    return session.execute(statement).rowcount > 0
