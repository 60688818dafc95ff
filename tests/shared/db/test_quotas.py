"""What counts against an owner's quotas, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

from shared.db import batches as batch_store
from shared.db import jobs as job_store
from shared.db.models import utcnow
from shared.db.quotas import active_job_count, stored_upload_bytes


def _job(session, *, owner="alice", size, batch=None):
    if batch is not None:
        return batch_store.add_item(session=session, batch=batch, upload_name="v.mp4", stored_name=f"{size}.mp4",
                                    upload_size=size, upload_sha256="0" * 64, lane="batch")
    return job_store.create_job(session=session, owner=owner, params={}, upload_name="v.mp4",
                                stored_name=f"{size}.mp4", upload_size=size, upload_sha256="0" * 64)


def _fail(session, job, *, days_ago: float = 0) -> None:
    job_store.claim_job(session=session, job_id=job.id, worker="w", stale_after_s=60)
    job_store.fail_job(session=session, job_id=job.id, code="x", message="x")
    session.refresh(job)
    job.finished_at = utcnow() - timedelta(days=days_ago)
    session.commit()


def test_active_jobs_are_the_owners_queued_and_running(db_session_factory):
    with db_session_factory() as session:
        queued, running, ended = (_job(session, size=n) for n in (1, 2, 3))
        _job(session, owner="bob", size=4)
        session.commit()
        job_store.claim_job(session=session, job_id=running.id, worker="w", stale_after_s=60)
        _fail(session, ended)

        assert active_job_count(session=session, owner="alice") == 2
        assert active_job_count(session=session, owner="carol") == 0


def test_stored_bytes_follow_the_retention_rules(db_session_factory):
    with db_session_factory() as session:
        batch = batch_store.create_batch(session=session, owner="alice", name="b", params={})
        _job(session, size=1)                      # queued: stored
        ended_now = _job(session, size=10)         # ended today: stored only if uploads are kept after the end
        ended_long_ago = _job(session, size=100)   # ended 30 days ago: gone under any retention here
        failed_item = _job(session, size=1000, batch=batch)  # a failed batch item: kept for "retry failed"
        batch_store.add_failed_item(session=session, batch=batch, upload_name="junk", upload_size=10_000,
                                    upload_sha256="0" * 64, code="not_a_video", message="refused: nothing stored")
        _job(session, owner="bob", size=100_000)
        session.commit()
        _fail(session, ended_now)
        _fail(session, ended_long_ago, days_ago=30)
        _fail(session, failed_item, days_ago=2)

        def stored(keep_days, failed_batch_keep_days):
            return stored_upload_bytes(session=session, owner="alice", keep_days=keep_days,
                                       failed_batch_keep_days=failed_batch_keep_days)

        assert stored(0, 0) == 1
        assert stored(0, 7) == 1 + 1000
        assert stored(1, 0) == 1 + 10
        assert stored(1, 7) == 1 + 10 + 1000
        assert stored_upload_bytes(session=session, owner="carol", keep_days=1, failed_batch_keep_days=7) == 0
