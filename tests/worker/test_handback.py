"""A worker told to stop (SIGTERM: a deploy, a scale-down, `serve` stopping) hands its running job back at
once, to the front of its lane, instead of leaving it to be found stale after HEARTBEAT_TIMEOUT_S."""
from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from shared.db import jobs
from tests.conftest import wait_for
from tests.worker.conftest import job_row

SLOW_PARAMS = {"sequence_length": 8, "face_detector": "none", "precision": "fp32", "batch_size": 4}


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_stopped_worker_hands_its_job_back_and_another_finishes_it_once(
        worker_settings, queue_job, send_analyze, start_worker, db_session_factory, long_clip):
    # A heartbeat timeout far longer than the waits below: only the hand-back can requeue the job in time.
    settings = replace(worker_settings, heartbeat_timeout_s=600)
    first = start_worker(settings, name="first")
    job_id = queue_job(long_clip, params=SLOW_PARAMS)
    send_analyze(job_id)
    wait_for(lambda: job_row(db_session_factory, job_id).progress_done > 0, timeout=120, what="progress on worker 1")
    first_worker = job_row(db_session_factory, job_id).worker

    first.send_signal(signal.SIGTERM)
    job = wait_for(lambda: (j := job_row(db_session_factory, job_id)).status == "queued" and j, timeout=60,
                   what="the job handed back (queued) well before its heartbeat would go stale")
    assert job.worker is None and job.attempts == 1
    assert first.wait(timeout=120) == 0  # a warm shutdown: the superseded analysis stopped, nothing written

    start_worker(settings, name="second")
    done = wait_for(lambda: (j := job_row(db_session_factory, job_id)).status in ("succeeded", "failed") and j,
                    timeout=300, what="the second worker to finish the job")
    assert (done.status, done.attempts, done.result["frames_analyzed"]) == ("succeeded", 2, 60)
    assert done.worker != first_worker
    with db_session_factory() as session:
        artifacts = jobs.list_artifacts(session=session, job_id=job_id)
        windows = jobs.job_windows(session=session, job_id=job_id)
    assert all(a.path.startswith(f"{job_id}/2/") for a in artifacts)
    assert len(windows) == len(jobs.result_windows(done.result))


def test_hand_back_requeues_only_the_named_workers_running_jobs(worker_settings, queue_job, db_session_factory,
                                                                 short_clip):
    ids = [queue_job(short_clip) for _ in range(3)]
    with db_session_factory() as session:
        for job_id, worker in zip(ids, ("host:1", "host:2", "other:1")):
            jobs.claim_job(session=session, job_id=job_id, worker=worker, stale_after_s=600)
        jobs.request_cancel(session=session, owner="local", job_id=ids[1])
        session.commit()
        handed = jobs.hand_back_jobs(session=session, workers=["host:1", "host:2"])
        session.commit()
    assert handed == [ids[0]]
    states = [(j.status, j.worker) for j in (job_row(db_session_factory, job_id) for job_id in ids)]
    assert states == [("queued", None), ("cancelled", "host:2"), ("running", "other:1")]
