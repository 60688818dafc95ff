"""Real Celery worker processes on the real Redis and the test's database.

Each test runs on one database backend only (the data layer itself is tested on both), to keep
the worker start-ups within the time budget.
"""
from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from shared.db import jobs
from shared.db.models import TERMINAL_STATUSES, Job
from tests.checkpoints import write_constant_checkpoint
from tests.conftest import stop_process_group, wait_for
from tests.worker.conftest import FAST_PARAMS, job_row

TERMINAL = {status.value for status in TERMINAL_STATUSES}


def _finished(db_session_factory, job_id: str) -> Job | None:
    job = job_row(db_session_factory, job_id)
    return job if job.status in TERMINAL else None


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_worker_analyses_a_queued_job_and_stores_the_result(worker_settings, queue_job, send_analyze,
                                                            start_worker, db_session_factory, short_clip):
    # Every window scores 0.9 >= threshold 0.5 + band 0.05: the whole-frame track and the video are FAKE.
    constant = write_constant_checkpoint(worker_settings.weights_dir, fake_probability=0.9, sequence_length=8)
    start_worker(worker_settings)
    job_id = queue_job(short_clip, params={**FAST_PARAMS, "weights": constant.name})
    send_analyze(job_id)
    job = wait_for(lambda: _finished(db_session_factory, job_id), timeout=120, what="the job to finish")
    assert (job.status, job.error_code, job.attempts) == ("succeeded", None, 1)
    assert job.result["verdict"] == job.verdict == "FAKE"
    assert job.fake_probability == pytest.approx(0.9, abs=1e-3)
    assert job.result["frames_analyzed"] == 20
    with db_session_factory() as session:
        stored_windows = [w.to_dict() for w in jobs.job_windows(session=session, job_id=job_id)]
    assert len(stored_windows) == len(jobs.result_windows(job.result)) > 0
    assert job.progress_done == job.progress_total == 20


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_non_video_fails_through_the_real_worker_without_retry(worker_settings, queue_job, send_analyze,
                                                                 start_worker, db_session_factory, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01 not a video" * 500)
    start_worker(worker_settings)
    job_id = queue_job(junk)
    send_analyze(job_id)
    send_analyze(job_id)  # a duplicate delivery changes nothing
    job = wait_for(lambda: _finished(db_session_factory, job_id), timeout=60, what="the job to fail")
    assert (job.status, job.error_code, job.attempts) == ("failed", "not_a_video", 1)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_worker_s_job_finishes_on_a_second_worker_exactly_once(
        worker_settings, queue_job, send_analyze, start_worker, db_session_factory, long_clip):
    settings = replace(worker_settings, heartbeat_timeout_s=4)
    first = start_worker(settings, name="first")
    job_id = queue_job(long_clip, params={"sequence_length": 8, "face_detector": "none", "precision": "fp32",
                                          "batch_size": 4})
    send_analyze(job_id)
    wait_for(lambda: job_row(db_session_factory, job_id).progress_done > 0, timeout=120, what="progress on worker 1")
    first_worker = job_row(db_session_factory, job_id).worker
    stop_process_group(first, sig=signal.SIGKILL)

    start_worker(settings, name="second")
    job = wait_for(lambda: _finished(db_session_factory, job_id), timeout=300, what="the job to finish again")
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert job.worker != first_worker
    assert job.result["frames_analyzed"] == 60
    with db_session_factory() as session:
        windows = jobs.job_windows(session=session, job_id=job_id)
        artifacts = jobs.list_artifacts(session=session, job_id=job_id)
    assert len(windows) == len(jobs.result_windows(job.result))
    assert all(a.path.startswith(f"{job_id}/2/") for a in artifacts)
    assert not (settings.artifacts_dir / job_id / "1").exists()
