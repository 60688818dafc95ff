"""Deleting ended jobs with their files: files first, rows after, so a store outage loses nothing.

Against the test's real database and the loopback S3 server; "down" is the same bucket reached
through a port nothing listens on.
"""
from __future__ import annotations

import socket
from datetime import timedelta

import boto3
import pytest
from botocore.config import Config

from shared.db import batches as batch_store
from shared.db import jobs as job_store
from shared.db import retention
from shared.db.models import Artifact, Batch, Job, JobStatus, utcnow
from shared.storage import S3Store, StorageUnavailableError, make_store


def _unreachable_store(settings) -> S3Store:
    """The bucket of `settings` as seen during an outage: one attempt at a closed loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    return S3Store(settings.data_dir, bucket=settings.s3_bucket, prefix=settings.s3_prefix, client=client)


def _put(store, key: str) -> None:
    path = store.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"bytes of " + key.encode())
    store.publish(key)


def _ended_job(session, store, *, days_ago: float, batch_id: str | None = None, stored_name: str | None = None,
               publish_upload: bool = True) -> str:
    """An ended job (with an artifact row) whose upload, artifact and resume checkpoint are in the store."""
    job = job_store.create_job(session=session, owner="alice", params={}, upload_name="clip.mp4",
                               stored_name=stored_name or "", upload_size=1, upload_sha256="0" * 64,
                               batch_id=batch_id)
    job.stored_name = stored_name or f"{job.id}.mp4"
    job.status, job.finished_at = JobStatus.SUCCEEDED.value, utcnow() - timedelta(days=days_ago)
    session.add(Artifact(job_id=job.id, name="heatmap.png", media_type="image/png", size=1,
                         path=f"{job.id}/1/heatmap.png"))
    session.commit()
    if publish_upload:
        _put(store, f"uploads/{job.stored_name}")
    _put(store, f"artifacts/{job.id}/1/heatmap.png")
    _put(store, f"checkpoints/{job.id}/trunk.npz")
    return job.id


def _stored_keys(store) -> set[str]:
    return {obj.key for folder in ("uploads", "artifacts", "checkpoints")
            for obj in store.list(folder, recursive=True)}


def _job_files(job_id: str, stored_name: str) -> set[str]:
    return {f"uploads/{stored_name}", f"artifacts/{job_id}/1/heatmap.png", f"checkpoints/{job_id}/trunk.npz"}


def test_a_sweep_during_an_outage_keeps_rows_and_files_and_the_next_one_removes_both(db_session_factory,
                                                                                    s3_settings, caplog):
    store = make_store(s3_settings)
    with db_session_factory() as session:
        batch_id = batch_store.create_batch(session=session, owner="alice", name="night", params={}).id
        session.commit()
        old = _ended_job(session, store, days_ago=10, batch_id=batch_id)
        older = _ended_job(session, store, days_ago=20)
        recent = _ended_job(session, store, days_ago=1)
    everything = _stored_keys(store)

    with db_session_factory() as session:
        assert retention.sweep_results(session=session, store=_unreachable_store(s3_settings), keep_days=7) == 0

    assert "result retention" in caplog.text and older in caplog.text
    assert _stored_keys(store) == everything
    with db_session_factory() as session:
        assert {job.id for job in session.query(Job)} == {old, older, recent}
        assert session.query(Artifact).count() == 3 and session.get(Batch, batch_id) is not None

    with db_session_factory() as session:
        assert retention.sweep_results(session=session, store=store, keep_days=7) == 2

    assert _stored_keys(store) == _job_files(recent, f"{recent}.mp4")
    with db_session_factory() as session:
        assert [job.id for job in session.query(Job)] == [recent]
        assert [a.job_id for a in session.query(Artifact)] == [recent]
        assert session.get(Batch, batch_id) is None


def test_files_already_gone_do_not_block_deleting_the_job(db_session_factory, s3_settings):
    store = make_store(s3_settings)
    with db_session_factory() as session:
        # The upload was removed at the job's end (UPLOAD_RETENTION_DAYS=0), the artifacts by an
        # earlier attempt that failed before the rows.
        swept = _ended_job(session, store, days_ago=10, publish_upload=False)
        store.delete_prefix(f"artifacts/{swept}")
        deleted = _ended_job(session, store, days_ago=10, publish_upload=False)

        assert retention.delete_job_with_files(session=session, store=store, owner="alice", job_id=deleted)
        assert retention.sweep_results(session=session, store=store, keep_days=7) == 1

        assert session.query(Job).count() == 0 and session.query(Artifact).count() == 0
    assert _stored_keys(store) == set()


def test_deleting_one_job_during_an_outage_raises_and_keeps_it_whole(db_session_factory, s3_settings):
    store = make_store(s3_settings)
    with db_session_factory() as session:
        job_id = _ended_job(session, store, days_ago=0)

        with pytest.raises(StorageUnavailableError):
            retention.delete_job_with_files(session=session, store=_unreachable_store(s3_settings),
                                            owner="alice", job_id=job_id)
        session.rollback()
        assert session.get(Job, job_id) is not None and session.query(Artifact).count() == 1
        assert _stored_keys(store) == _job_files(job_id, f"{job_id}.mp4")

        assert not retention.delete_job_with_files(session=session, store=store, owner="bob", job_id=job_id)
        assert retention.delete_job_with_files(session=session, store=store, owner="alice", job_id=job_id)
        assert session.get(Job, job_id) is None
    assert _stored_keys(store) == set()


def test_an_upload_another_job_still_uses_is_kept(db_session_factory, s3_settings):
    store = make_store(s3_settings)
    with db_session_factory() as session:
        first = _ended_job(session, store, days_ago=10, stored_name="shared.mp4")
        second = _ended_job(session, store, days_ago=1, stored_name="shared.mp4")

        assert retention.sweep_results(session=session, store=store, keep_days=7) == 1
        assert _stored_keys(store) == _job_files(second, "shared.mp4")
        assert retention.delete_job_with_files(session=session, store=store, owner=None, job_id=second)
        assert session.query(Job).count() == 0 and session.get(Job, first) is None
    assert _stored_keys(store) == set()
