"""Owner scoping in the data layer: an owner sees only its jobs and batches; owner=None (an admin) sees all."""
from __future__ import annotations

from shared.db import batches as batch_store
from shared.db import jobs as job_store
from shared.db import retention
from shared.db.models import JobStatus


def _job(session, owner: str) -> str:
    job = job_store.create_job(session=session, owner=owner, params={}, upload_name="a.mp4", stored_name=f"{owner}.mp4",
                               upload_size=1, upload_sha256="0" * 64)
    session.commit()
    return job.id


def test_an_owner_sees_only_its_own_and_none_sees_every_owner(db_session_factory):
    with db_session_factory() as session:
        alice, bob = _job(session, "alice"), _job(session, "bob")
        batch = batch_store.create_batch(session=session, owner="bob", name="b", params={})
        session.commit()

        assert job_store.get_job(session=session, owner="alice", job_id=bob) is None
        assert job_store.get_job(session=session, owner=None, job_id=bob).owner == "bob"
        assert [j.id for j in job_store.list_jobs(session=session, owner="alice")[0]] == [alice]
        assert {j.id for j in job_store.list_jobs(session=session, owner=None)[0]} == {alice, bob}
        assert batch_store.get_batch(session=session, owner="alice", batch_id=batch.id) is None
        assert batch_store.get_batch(session=session, owner=None, batch_id=batch.id).owner == "bob"
        assert batch_store.list_batches(session=session, owner="alice") == []
        assert [b.id for b in batch_store.list_batches(session=session, owner=None)] == [batch.id]


def test_cancel_and_delete_of_another_owners_job_change_nothing_but_an_admin_may(db_session_factory):
    with db_session_factory() as session:
        bob = _job(session, "bob")

        assert job_store.request_cancel(session=session, owner="alice", job_id=bob) is None
        session.commit()
        assert job_store.get_job(session=session, owner="bob", job_id=bob).status == JobStatus.QUEUED.value
        assert job_store.request_cancel(session=session, owner=None, job_id=bob).status == JobStatus.CANCELLED.value
        session.commit()
        assert retention.delete_ended_job(session=session, owner="alice", job_id=bob) is None
        assert retention.delete_ended_job(session=session, owner=None, job_id=bob) == "bob.mp4"
        assert job_store.get_job(session=session, owner=None, job_id=bob) is None
