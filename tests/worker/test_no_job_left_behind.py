"""Real workers on the real Redis and database: no job is left behind.

A job committed as queued whose message is lost is sent again and runs; a job orphaned by a lost
worker is requeued ahead of the jobs already waiting. Each test ends with every job finished
exactly once.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from shared.db import jobs
from shared.db.models import Job, utcnow
from tests.conftest import settings_env, wait_for
from worker.celery_app import make_celery
from worker.reaper import Reaper


def _jobs(db_session_factory, ids: list[str]) -> list[Job]:
    with db_session_factory() as session:
        return [session.get(Job, job_id) for job_id in ids]


def _all_succeeded(db_session_factory, ids: list[str]) -> list[Job] | None:
    found = _jobs(db_session_factory, ids)
    return found if all(job.status == "succeeded" for job in found) else None


def _delete_queue(redis_url: str, queue: str) -> None:
    """Lose this test's queued messages, as a Redis that lost its data would (only this queue's keys)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_queued_jobs_whose_messages_were_lost_are_sent_again_and_finish_once(
        worker_settings, queue_job, send_analyze, start_worker, db_session_factory, short_clip, redis_url, task_queue):
    lost_in_broker = queue_job(short_clip)
    send_analyze(lost_in_broker)
    never_sent = queue_job(short_clip)  # as if the web was killed between its commit and its send
    _delete_queue(redis_url, task_queue)

    start_worker(worker_settings, env=settings_env(worker_settings, REQUEUE_LOST_AFTER_S="2"))
    done = wait_for(lambda: _all_succeeded(db_session_factory, [lost_in_broker, never_sent]), timeout=180,
                    what="the lost jobs to be sent again and finish")
    assert [job.attempts for job in done] == [1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_orphaned_job_is_requeued_ahead_of_the_waiting_jobs(
        worker_settings, queue_job, send_analyze, start_worker, db_session_factory, short_clip):
    settings = replace(worker_settings, heartbeat_timeout_s=30)
    orphan = queue_job(short_clip)
    with db_session_factory() as session:  # its worker vanished mid-job an hour ago
        assert jobs.claim_job(session=session, job_id=orphan, worker="lost", stale_after_s=30, max_attempts=3)
        session.execute(update(Job).where(Job.id == orphan).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        session.commit()
    waiting = [queue_job(short_clip) for _ in range(3)]
    for job_id in waiting:
        send_analyze(job_id)
    reaper = Reaper(make_celery(settings), settings, interval_s=60)
    try:
        assert reaper.reap_once() == [orphan]
    finally:
        reaper.stop()

    start_worker(settings)
    done = wait_for(lambda: _all_succeeded(db_session_factory, [orphan, *waiting]), timeout=300,
                    what="all four jobs to finish")
    order = sorted(done, key=lambda job: job.finished_at)
    assert order[0].id == orphan, "the requeued job should run before the three that waited"
    assert [job.attempts for job in done] == [2, 1, 1, 1]
