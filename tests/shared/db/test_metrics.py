"""read_job_metrics at a fixed `now`: ages are exact, whatever the machine's speed (SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from shared.db import jobs
from shared.db.metrics import read_job_metrics
from shared.db.models import Job, utcnow


def _job(session) -> str:
    job = jobs.create_job(session=session, owner="alice", params={}, upload_name="clip.mp4",
                          stored_name="clip.mp4", upload_size=1, upload_sha256="ab" * 32)
    session.commit()
    return job.id


def test_ages_are_measured_from_the_given_now(db_session_factory):
    now = utcnow()
    with db_session_factory() as session:
        oldest, newer, running = _job(session), _job(session), _job(session)
        assert jobs.claim_job(session=session, job_id=running, worker="w1", stale_after_s=60)
        for job_id, values in ((oldest, {"created_at": now - timedelta(seconds=150)}),
                               (newer, {"created_at": now - timedelta(seconds=30)}),
                               (running, {"heartbeat_at": now - timedelta(seconds=7)})):
            session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()

        metrics = read_job_metrics(session=session, now=now)

    assert metrics.active == {"queued": 2, "running": 1}
    assert metrics.oldest_queued_age_s == 150.0
    assert metrics.running_heartbeat_age_s == {"w1": 7.0}


def test_no_queued_job_has_no_age(db_session_factory):
    with db_session_factory() as session:
        metrics = read_job_metrics(session=session, now=utcnow())
    assert metrics.oldest_queued_age_s is None and metrics.running_heartbeat_age_s == {}
