"""shared.db.webhooks on SQLite and PostgreSQL: armed once when the job or batch ends, one attempt at a time,
delivered at most once recorded, lost messages found once."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from shared.db import batches as batch_store
from shared.db import jobs
from shared.db import webhooks as event_store
from shared.db.models import WebhookEvent, utcnow

URL = "https://hooks.example.com/deepfake"


def _job(session, *, batch=None) -> str:
    if batch is not None:
        return batch_store.add_item(session=session, batch=batch, upload_name="a.mp4", stored_name="a.mp4",
                                    upload_size=1, upload_sha256="0" * 64, lane="batch").id
    return jobs.create_job(session=session, owner="local", params={}, upload_name="a.mp4", stored_name="a.mp4",
                           upload_size=1, upload_sha256="0" * 64).id


def _armed_event(session) -> str:
    """A job's subscribed event, armed by the job's end and committed: due for its first attempt."""
    job_id = _job(session)
    event_id = event_store.subscribe(session=session, url=URL, job_id=job_id).id
    _end(session, job_id)
    event_store.arm_job(session=session, job_id=job_id)
    session.commit()
    return event_id


def _end(session, job_id: str) -> None:
    jobs.claim_job(session=session, job_id=job_id, worker="w", stale_after_s=60)
    jobs.complete_job(session=session, job_id=job_id, result={"verdict": "FAKE", "fake_probability": 0.9})


def test_a_job_s_event_is_armed_once_when_the_job_ends(db_session_factory):
    with db_session_factory() as session:
        job_id = _job(session)
        event = event_store.subscribe(session=session, url=URL, job_id=job_id)
        session.commit()
        assert event.id.startswith("msg_")
        assert event_store.arm_job(session=session, job_id=job_id) == []  # still queued

        _end(session, job_id)
        assert event_store.arm_job(session=session, job_id=job_id) == [event.id]
        assert event_store.arm_job(session=session, job_id=job_id) == []
        session.commit()
        stored = session.get(WebhookEvent, event.id, populate_existing=True)
        assert stored.payload["type"] == "job.completed"
        assert stored.payload["data"] == {
            "id": job_id, "status": "succeeded", "verdict": "FAKE", "fake_probability": 0.9, "error": None,
            "links": {"self": f"/api/v1/jobs/{job_id}", "artifacts": f"/api/v1/jobs/{job_id}/artifacts",
                      "page": f"/jobs/{job_id}"}}
        assert stored.next_attempt_at is not None and stored.attempts == 0


def test_one_attempt_at_a_time_and_a_delivered_event_is_never_taken_again(db_session_factory):
    with db_session_factory() as session:
        event_id = _armed_event(session)

        first = event_store.take_attempt(session=session, event_id=event_id, lease_s=60)
        assert first.attempts == 1
        assert event_store.take_attempt(session=session, event_id=event_id, lease_s=60) is None  # leased
        assert event_store.record_failure(session=session, event_id=event_id, attempt=1, error="HTTP 500",
                                          retry_at=utcnow() - timedelta(seconds=1))
        second = event_store.take_attempt(session=session, event_id=event_id, lease_s=60)
        assert second.attempts == 2
        # The first attempt's late write changes nothing: the event is the second attempt's now.
        assert not event_store.record_delivered(session=session, event_id=event_id, attempt=1)
        assert event_store.record_delivered(session=session, event_id=event_id, attempt=2)
        assert not event_store.record_delivered(session=session, event_id=event_id, attempt=2)
        assert event_store.take_attempt(session=session, event_id=event_id, lease_s=60) is None
        assert event_store.pending_count(session=session) == 0


def test_an_overdue_event_is_sent_again_once(db_session_factory):
    with db_session_factory() as session:
        event_id = _armed_event(session)
        assert event_store.lost_events(session=session, overdue_s=60) == []

        event_store.take_attempt(session=session, event_id=event_id, lease_s=60)
        event_store.record_failure(session=session, event_id=event_id, attempt=1, error="timeout",
                                   retry_at=utcnow() - timedelta(seconds=120))
        assert event_store.lost_events(session=session, overdue_s=60) == [event_id]
        assert event_store.record_resend(session=session, event_id=event_id, overdue_s=60)
        assert not event_store.record_resend(session=session, event_id=event_id, overdue_s=60)
        session.commit()
        assert event_store.lost_events(session=session, overdue_s=60) == []
        assert event_store.take_attempt(session=session, event_id=event_id, lease_s=60).attempts == 2


def test_a_given_up_event_is_neither_due_nor_lost(db_session_factory):
    with db_session_factory() as session:
        event_id = _armed_event(session)
        event_store.take_attempt(session=session, event_id=event_id, lease_s=60)
        event_store.record_failure(session=session, event_id=event_id, attempt=1, error="HTTP 404", retry_at=None)
        assert event_store.take_attempt(session=session, event_id=event_id, lease_s=60) is None
        assert event_store.lost_events(session=session, overdue_s=0) == []
        assert session.get(WebhookEvent, event_id, populate_existing=True).last_error == "HTTP 404"


def test_a_batch_s_event_is_armed_when_every_item_ended_and_none_arrived_lately(db_session_factory):
    with db_session_factory() as session:
        batch = batch_store.create_batch(session=session, owner="local", name="night", params={})
        event_id = event_store.subscribe(session=session, url=URL, batch_id=batch.id).id
        assert event_store.arm_batch(session=session, batch_id=batch.id, settle_s=0) == []  # empty: files to come
        first, second = _job(session, batch=batch), _job(session, batch=batch)
        session.commit()
        _end(session, first)
        assert event_store.arm_batch(session=session, batch_id=batch.id, settle_s=0) == []
        _end(session, second)
        assert event_store.arm_batch(session=session, batch_id=batch.id, settle_s=3600) == []  # an item just came
        assert event_store.arm_ended(session=session, settle_s=0) == [event_id]
        assert event_store.arm_batch(session=session, batch_id=batch.id, settle_s=0) == []
        session.commit()
        data = session.get(WebhookEvent, event_id, populate_existing=True).payload["data"]
        assert data["id"] == batch.id and data["status"] == "completed"
        assert data["counts"] == {"succeeded": 2} and data["verdicts"] == {"FAKE": 2}
        assert data["fake_probability"] == 0.9


def test_a_job_cancelled_while_queued_is_armed_by_the_sweep(db_session_factory):
    with db_session_factory() as session:
        job_id = _job(session)
        event_id = event_store.subscribe(session=session, url=URL, job_id=job_id).id
        session.commit()
        assert event_store.arm_ended(session=session, settle_s=0) == []
        jobs.request_cancel(session=session, owner="local", job_id=job_id)
        session.commit()
        assert event_store.arm_ended(session=session, settle_s=0) == [event_id]
        assert event_store.arm_ended(session=session, settle_s=0) == []
        session.commit()
        assert session.get(WebhookEvent, event_id).payload["data"]["status"] == "cancelled"


def test_an_event_belongs_to_exactly_one_job_or_batch(db_session_factory):
    with db_session_factory() as session:
        session.add(WebhookEvent(id="msg_none", url=URL, created_at=utcnow(), attempts=0))
        with pytest.raises(IntegrityError):
            session.flush()


def test_open_or_empty_batches_do_not_starve_an_ended_one_in_the_sweep(db_session_factory):
    with db_session_factory() as session:
        empty = batch_store.create_batch(session=session, owner="local", name="no files yet", params={})
        open_batch = batch_store.create_batch(session=session, owner="local", name="still running", params={})
        ended = batch_store.create_batch(session=session, owner="local", name="done", params={})
        for batch in (empty, open_batch):
            event_store.subscribe(session=session, url=URL, batch_id=batch.id)
        _job(session, batch=open_batch)
        done_event = event_store.subscribe(session=session, url=URL, batch_id=ended.id).id
        item = _job(session, batch=ended)
        session.commit()
        _end(session, item)

        assert event_store.arm_ended(session=session, settle_s=0, limit=1) == [done_event]
