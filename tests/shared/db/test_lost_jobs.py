"""Queued jobs whose task may be lost: found by their send time, re-sent once (SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from shared.db import jobs
from shared.db.models import Job, utcnow


def _queued(session, *, sent_ago_s: float | None) -> str:
    job = jobs.create_job(session=session, owner="alice", params={}, upload_name="clip.mp4",
                          stored_name="clip.mp4", upload_size=1, upload_sha256="ab" * 32)
    sent_at = None if sent_ago_s is None else utcnow() - timedelta(seconds=sent_ago_s)
    session.execute(update(Job).where(Job.id == job.id).values(sent_at=sent_at))
    session.commit()
    return job.id


def test_a_new_job_counts_as_sent_now(db_session_factory):
    with db_session_factory() as session:
        job = jobs.create_job(session=session, owner="alice", params={}, upload_name="a.mp4", stored_name="a.mp4",
                              upload_size=1, upload_sha256="ab" * 32)
        session.commit()
        assert job.sent_at is not None
        assert jobs.unsent_queued_jobs(session=session, sent_before_s=60) == []


def test_queued_jobs_not_sent_for_a_while_are_found_oldest_first(db_session_factory):
    with db_session_factory() as session:
        old = _queued(session, sent_ago_s=600)
        unknown = _queued(session, sent_ago_s=None)  # a row from before sent_at existed
        _queued(session, sent_ago_s=5)
        running = _queued(session, sent_ago_s=600)
        assert jobs.claim_job(session=session, job_id=running, worker="w", stale_after_s=60)
        assert jobs.unsent_queued_jobs(session=session, sent_before_s=60) == [old, unknown]


def test_only_one_resend_is_recorded_per_delay(db_session_factory):
    with db_session_factory() as session:
        job_id = _queued(session, sent_ago_s=600)
        assert jobs.record_resend(session=session, job_id=job_id, sent_before_s=60)
        session.commit()
        assert not jobs.record_resend(session=session, job_id=job_id, sent_before_s=60)
        assert jobs.unsent_queued_jobs(session=session, sent_before_s=60) == []


def test_requeues_and_releases_count_as_sends(db_session_factory):
    with db_session_factory() as session:
        reaped, released = _queued(session, sent_ago_s=600), _queued(session, sent_ago_s=600)
        for job_id in (reaped, released):
            assert jobs.claim_job(session=session, job_id=job_id, worker="w", stale_after_s=60)
        session.execute(update(Job).where(Job.id == reaped).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        session.commit()
        assert jobs.reap_stale_jobs(session=session, stale_after_s=60, max_attempts=3) == [reaped]
        assert jobs.release_job(session=session, job_id=released, attempt=1)
        assert jobs.unsent_queued_jobs(session=session, sent_before_s=60) == []
