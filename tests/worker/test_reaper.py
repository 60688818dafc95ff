"""The reaper against the real database and Redis: a requeue commits only with its task sent; requeued
jobs go to the front queue; queued jobs whose message was lost are sent again, once."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import redis
from sqlalchemy import update

from cli.service import free_port
from shared.db import jobs
from shared.db.models import Job, utcnow
from worker.celery_app import front_queue, make_celery
from worker.reaper import Reaper, task_job_id


def _stale_running_job(db_session_factory, queue_job) -> str:
    job_id = queue_job(None)
    with db_session_factory() as session:
        assert jobs.claim_job(session=session, job_id=job_id, worker="lost-worker", stale_after_s=60, max_attempts=3)
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        session.commit()
    return job_id


def _status(db_session_factory, job_id: str) -> str:
    with db_session_factory() as session:
        return session.get(Job, job_id).status


def _queued_job_ids(redis_url: str, queue: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(json.loads(raw)["headers"]["argsrepr"].replace("'", '"'))[0]
                for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def _sent_long_ago(db_session_factory, job_id: str) -> None:
    with db_session_factory() as session:
        session.execute(update(Job).where(Job.id == job_id).values(sent_at=utcnow() - timedelta(hours=1)))
        session.commit()


def test_a_requeue_whose_task_cannot_be_sent_stays_stale_and_is_sent_on_the_next_pass(
        worker_settings, db_session_factory, queue_job, redis_url, task_queue):
    job_id = _stale_running_job(db_session_factory, queue_job)
    nowhere = replace(worker_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    broken = make_celery(nowhere)
    broken.conf.update(broker_connection_timeout=0.5, broker_connection_retry=False, broker_connection_max_retries=0,
                       task_publish_retry=False)
    try:
        Reaper(broken, nowhere, interval_s=60).reap_once()
    except Exception as exc:  # the broker's connection error, whichever kombu raises
        assert "refused" in str(exc).lower() or "connect" in str(exc).lower(), exc
    else:
        raise AssertionError("sending to a closed port should fail")
    assert _status(db_session_factory, job_id) == "running"  # not queued without a task
    assert _queued_job_ids(redis_url, task_queue) == []

    requeued = Reaper(make_celery(worker_settings), worker_settings, interval_s=60).reap_once()
    assert requeued == [job_id]
    assert _status(db_session_factory, job_id) == "queued"
    assert _queued_job_ids(redis_url, front_queue(task_queue)) == [job_id]
    assert _queued_job_ids(redis_url, task_queue) == []


def test_a_queued_job_whose_message_was_lost_is_sent_again_once(
        worker_settings, db_session_factory, queue_job, send_analyze, redis_url, task_queue):
    lost, waiting, recent = queue_job(None), queue_job(None), queue_job(None)
    send_analyze(waiting)  # its message waits in the queue: not lost, however long it waits
    for job_id in (lost, waiting):
        _sent_long_ago(db_session_factory, job_id)
    reaper = Reaper(make_celery(worker_settings), worker_settings, interval_s=60)
    try:
        assert reaper.reap_once() == [lost]  # `recent` may still be on its way to the broker
        assert reaper.reap_once() == []  # sent again once per REQUEUE_LOST_AFTER_S, not once per pass
    finally:
        reaper.stop()
    assert _queued_job_ids(redis_url, front_queue(task_queue)) == [lost]
    assert _queued_job_ids(redis_url, task_queue) == [waiting]
    assert {_status(db_session_factory, job_id) for job_id in (lost, waiting, recent)} == {"queued"}


def test_task_job_id_reads_the_messages_celery_writes(worker_settings, send_analyze, redis_url, task_queue):
    send_analyze("a-job-id")
    client = redis.Redis.from_url(redis_url)
    try:
        [raw] = client.lrange(task_queue, 0, -1)
    finally:
        client.close()
    assert task_job_id(raw) == "a-job-id"
    assert task_job_id(b"not json") is None


def test_transient_errors_are_retried_without_a_limit(worker_settings):
    from worker.celery_app import ANALYZE_TASK

    assert make_celery(worker_settings).tasks[ANALYZE_TASK].max_retries is None


def test_the_reaper_sweeps_uploads_no_job_end_removed_on_its_first_pass_then_on_its_timer(
        worker_settings, queue_job, db_session_factory, tmp_path):
    """An upload whose job was cancelled while queued has no worker to remove it: the reaper's timed sweep does."""
    video = tmp_path / "cancelled.mp4"
    video.write_bytes(b"never analysed")
    job_id = queue_job(video)
    upload = worker_settings.uploads_dir / _stored_name(db_session_factory, job_id)
    with db_session_factory() as session:
        assert jobs.request_cancel(session=session, owner=None, job_id=job_id).status == "cancelled"
        session.commit()
    reaper = Reaper(make_celery(worker_settings), worker_settings, interval_s=60, sweep_every_s=3600)
    try:
        assert upload.exists()
        reaper.reap_once()
        assert not upload.exists()
        assert not reaper.sweep_if_due()  # within the hour: no second walk
        reaper.sweep_every_s = 0
        assert reaper.sweep_if_due()
    finally:
        reaper.stop()


def _stored_name(db_session_factory, job_id: str) -> str:
    with db_session_factory() as session:
        return session.get(Job, job_id).stored_name
