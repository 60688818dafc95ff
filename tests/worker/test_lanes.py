"""Queue lanes against the real Redis, database and Celery worker: a worker that serves interactive and batch
work takes interactive uploads first, and the reaper sends lost or orphaned jobs back to their own lane."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import update

from shared import lanes, liveness
from shared.db import jobs
from shared.db.batches import create_batch
from shared.db.models import TERMINAL_STATUSES, Job, utcnow
from tests.conftest import wait_for
from worker.celery_app import ANALYZE_TASK, make_celery
from worker.reaper import Reaper, task_job_id

TERMINAL = {status.value for status in TERMINAL_STATUSES}


@pytest.fixture
def send_to(redis_url: str):
    """Send `deepfake.analyze_job(job_id)` to a given queue, as the web (or the reaper) does."""
    client = Celery("test-lanes", broker=redis_url, set_as_current=False)
    yield lambda queue, job_id: client.send_task(ANALYZE_TASK, args=[job_id], queue=queue)
    client.close()


def _queued(redis_url: str, queue: str) -> list[str]:
    """Job ids waiting in `queue`, oldest first."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [task_job_id(raw) for raw in reversed(client.lrange(queue, 0, -1))]
    finally:
        client.close()


def _jobs(db_session_factory, ids: list[str]) -> list[Job]:
    with db_session_factory() as session:
        return [session.get(Job, job_id) for job_id in ids]


def _junk_videos(folder: Path, count: int) -> list[Path]:
    """Files that fail at once (not_a_video): queue entries that cost no engine time."""
    paths = [folder / f"junk-{index}.mp4" for index in range(count)]
    for index, path in enumerate(paths):
        path.write_bytes(b"\x00\x01 not a video %d" % index * 500)
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_interactive_uploads_run_before_the_batch_items_waiting_ahead_of_them(
        worker_settings, queue_job, send_to, start_worker, db_session_factory, long_clip, tmp_path, task_queue):
    interactive = lanes.lane_queue(lanes.INTERACTIVE, base=task_queue)
    batch = lanes.lane_queue(lanes.BATCH, base=task_queue)
    settings = replace(worker_settings, worker_queues=lanes.default_worker_queues(base=task_queue))
    assert settings.worker_queues == (interactive, batch)
    junk = iter(_junk_videos(tmp_path, 7))
    slow_params = {"sequence_length": 8, "face_detector": "none", "precision": "fp32", "batch_size": 4}
    # The batch queue fills first: a real analysis, then four items behind it; then an upload arrives.
    running_batch_item = queue_job(long_clip, params=slow_params, lane=lanes.BATCH)
    waiting_batch_items = [queue_job(next(junk), lane=lanes.BATCH) for _ in range(4)]
    for job_id in [running_batch_item, *waiting_batch_items]:
        send_to(batch, job_id)
    first_upload = queue_job(next(junk))
    send_to(interactive, first_upload)

    start_worker(settings)
    wait_for(lambda: _jobs(db_session_factory, [running_batch_item])[0].status == "running", timeout=120,
             what="the worker to start the first batch item")
    # Two more uploads while the worker is busy with a batch item and four more wait in the batch queue.
    later_uploads = [queue_job(next(junk)) for _ in range(2)]
    for job_id in later_uploads:
        send_to(interactive, job_id)
    assert _jobs(db_session_factory, [running_batch_item])[0].status == "running", \
        "the batch item ended before the uploads were queued: the test needs a longer clip"

    everything = [first_upload, running_batch_item, *later_uploads, *waiting_batch_items]
    done = wait_for(lambda: (found := _jobs(db_session_factory, everything))
                    and all(job.status in TERMINAL for job in found) and found, timeout=300, what="every job to end")
    started = [job.id for job in sorted(done, key=lambda job: job.started_at)]
    # Round-robin polling would alternate between the lanes (upload, batch item, upload, batch item, ...).
    assert started == everything
    assert [job.attempts for job in done] == [1] * len(everything)
    assert _jobs(db_session_factory, [running_batch_item])[0].status == "succeeded"


def _stale_running(db_session_factory, queue_job, *, lane: str) -> str:
    job_id = queue_job(None, lane=lane)
    with db_session_factory() as session:
        assert jobs.claim_job(session=session, job_id=job_id, worker="lost-worker", stale_after_s=60, max_attempts=3)
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        session.commit()
    return job_id


def _sent_long_ago(db_session_factory, *job_ids: str) -> None:
    with db_session_factory() as session:
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(sent_at=utcnow() - timedelta(hours=1)))
        session.commit()


def _lane_queues(base: str) -> dict[str, str]:
    return {lane: lanes.lane_queue(lane, base=base) for lane in lanes.LANES}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_orphaned_jobs_go_back_to_the_front_of_their_own_lane(
        worker_settings, db_session_factory, queue_job, redis_url, task_queue):
    orphans = {lane: _stale_running(db_session_factory, queue_job, lane=lane) for lane in lanes.LANES}
    # This reaper's worker consumes the interactive queue only: it still sends each job to its lane.
    reaper = Reaper(make_celery(worker_settings), worker_settings, interval_s=60)
    try:
        assert sorted(reaper.reap_once()) == sorted(orphans.values())
    finally:
        reaper.stop()
    for lane, queue in _lane_queues(task_queue).items():
        assert _queued(redis_url, lanes.front_queue(queue)) == [orphans[lane]], lane
        assert _queued(redis_url, queue) == [], lane


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_lost_messages_are_found_missing_in_their_lane_s_queues_and_sent_there_again(
        worker_settings, db_session_factory, queue_job, send_to, redis_url, task_queue):
    queues = _lane_queues(task_queue)
    waiting_batch, requeued_batch, lost_batch = (queue_job(None, lane=lanes.BATCH) for _ in range(3))
    waiting_gpu, lost_gpu = (queue_job(None, lane=lanes.GPU) for _ in range(2))
    send_to(queues[lanes.BATCH], waiting_batch)
    send_to(lanes.front_queue(queues[lanes.BATCH]), requeued_batch)
    send_to(queues[lanes.GPU], waiting_gpu)
    _sent_long_ago(db_session_factory, waiting_batch, requeued_batch, lost_batch, waiting_gpu, lost_gpu)
    reaper = Reaper(make_celery(worker_settings), worker_settings, interval_s=60)
    try:
        assert sorted(reaper.reap_once()) == sorted([lost_batch, lost_gpu])
        assert reaper.reap_once() == []
    finally:
        reaper.stop()
    assert _queued(redis_url, lanes.front_queue(queues[lanes.BATCH])) == [requeued_batch, lost_batch]
    assert _queued(redis_url, queues[lanes.BATCH]) == [waiting_batch]
    assert _queued(redis_url, lanes.front_queue(queues[lanes.GPU])) == [lost_gpu]
    assert _queued(redis_url, queues[lanes.GPU]) == [waiting_gpu]
    assert _queued(redis_url, queues[lanes.INTERACTIVE]) == []


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_gpu_lane_jobs_move_to_their_cpu_lane_once_no_gpu_worker_is_alive(
        worker_settings, db_session_factory, queue_job, send_to, redis_url, task_queue):
    queues = _lane_queues(task_queue)
    upload, item = queue_job(None, lane=lanes.GPU), queue_job(None, lane=lanes.GPU)
    with db_session_factory() as session:
        batch = create_batch(session=session, owner="local", name="night", params={})
        session.execute(update(Job).where(Job.id == item).values(batch_id=batch.id, batch_position=0))
        session.commit()
    for job_id in (upload, item):
        send_to(queues[lanes.GPU], job_id)
    _sent_long_ago(db_session_factory, upload, item)
    client = redis.Redis.from_url(redis_url)
    app = make_celery(worker_settings)
    patient = Reaper(app, worker_settings, interval_s=60)  # waits HEARTBEAT_TIMEOUT_S without a GPU worker
    eager = Reaper(app, worker_settings, interval_s=60, gpu_absent_after_s=0)
    try:
        liveness.beat(client, worker="gpu@test", queues=[queues[lanes.GPU]])
        assert eager.reap_once() == []  # a GPU worker is alive: they wait for it
        liveness.leave(client, worker="gpu@test", queues=[queues[lanes.GPU]])
        assert patient.reap_once() == []
        assert sorted(eager.reap_once()) == sorted([upload, item])
        assert eager.reap_once() == patient.reap_once() == []
    finally:
        patient.stop()
        eager.stop()
        client.close()
    assert [job.lane for job in _jobs(db_session_factory, [upload, item])] == [lanes.INTERACTIVE, lanes.BATCH]
    assert _queued(redis_url, lanes.front_queue(queues[lanes.INTERACTIVE])) == [upload]
    assert _queued(redis_url, lanes.front_queue(queues[lanes.BATCH])) == [item]
    assert _queued(redis_url, queues[lanes.GPU]) == [upload, item]  # found taken if a GPU worker comes back
