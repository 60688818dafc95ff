"""Data access on SQLite and PostgreSQL (each test runs on both through `database_url`)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import update

from shared.db import jobs
from shared.db.artifacts import StoredArtifact
from shared.db.models import Job, JobStatus, utcnow


@dataclass(frozen=True)
class Window:
    track_id: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    fake_probability: float


def _new(session, owner: str = "alice", **params) -> Job:
    job = jobs.create_job(session=session, owner=owner, params=params, upload_name="clip.mp4",
                          stored_name=f"{owner}-upload.mp4", upload_size=1234, upload_sha256="ab" * 32)
    session.commit()
    return job


def _claim(session, job: Job, worker: str = "w1") -> Job | None:
    return jobs.claim_job(session=session, job_id=job.id, worker=worker, stale_after_s=60, max_attempts=3)


def _age_heartbeat(session, job_id: str, seconds: float) -> None:
    past = utcnow() - timedelta(seconds=seconds)
    session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=past))
    session.commit()


def _status(session_factory, job_id: str) -> Job:
    with session_factory() as fresh:
        return fresh.get(Job, job_id)


def test_create_and_get_round_trip(db_session_factory):
    with db_session_factory() as session:
        job = _new(session, sequence_length=8, face_detector="none")
    stored = _status(db_session_factory, job.id)
    assert stored.status == JobStatus.QUEUED.value
    assert stored.params == {"sequence_length": 8, "face_detector": "none"}
    assert (stored.upload_name, stored.upload_size, stored.attempts) == ("clip.mp4", 1234, 0)
    assert stored.created_at.tzinfo is not None
    with db_session_factory() as session:
        assert jobs.get_job(session=session, owner="alice", job_id=job.id).id == job.id


def test_another_owners_job_is_invisible(db_session_factory):
    with db_session_factory() as session:
        job = _new(session, owner="alice")
        _claim(session, job)
        assert jobs.get_job(session=session, owner="mallory", job_id=job.id) is None
        assert jobs.list_jobs(session=session, owner="mallory") == ([], None)
        assert jobs.request_cancel(session=session, owner="mallory", job_id=job.id) is None
        session.commit()
    assert _status(db_session_factory, job.id).cancel_requested is False


def test_list_pages_newest_first_with_cursor(db_session_factory):
    with db_session_factory() as session:
        created = [_new(session).id for _ in range(7)]
        _new(session, owner="bob")
        seen, cursor, pages = [], None, 0
        while True:
            page, cursor = jobs.list_jobs(session=session, owner="alice", limit=3, cursor=cursor)
            seen += [job.id for job in page]
            pages += 1
            if cursor is None:
                break
    assert seen == list(reversed(created))
    assert pages == 3


def test_cursor_pagination_breaks_created_at_ties_by_id(db_session_factory):
    with db_session_factory() as session:
        ids = [_new(session).id for _ in range(5)]
        same = utcnow()
        session.execute(update(Job).values(created_at=same))
        session.commit()
        first, cursor = jobs.list_jobs(session=session, owner="alice", limit=2)
        rest, end = jobs.list_jobs(session=session, owner="alice", limit=10, cursor=cursor)
    assert end is None
    assert [job.id for job in first + rest] == sorted(ids, reverse=True)


def test_list_filters_by_status(db_session_factory):
    with db_session_factory() as session:
        running = _new(session)
        queued = _new(session)
        _claim(session, running)
        only_queued, _ = jobs.list_jobs(session=session, owner="alice", status="queued")
        only_running, _ = jobs.list_jobs(session=session, owner="alice", status="running")
        with pytest.raises(ValueError):
            jobs.list_jobs(session=session, owner="alice", status="bogus")
    assert [job.id for job in only_queued] == [queued.id]
    assert [job.id for job in only_running] == [running.id]


@pytest.mark.parametrize("cursor", ["not-base64!", "Zm9vYmFy", "", "MjAyNC0wMS0wMXx4"])
def test_invalid_cursor_is_a_typed_error(db_session_factory, cursor):
    with db_session_factory() as session, pytest.raises(jobs.InvalidCursorError):
        jobs.list_jobs(session=session, owner="alice", cursor=cursor)


def test_queue_position_counts_older_queued_jobs(db_session_factory):
    with db_session_factory() as session:
        first, second, third = _new(session), _new(session, owner="bob"), _new(session)
        assert [jobs.queue_position(session=session, job=j) for j in (first, second, third)] == [1, 2, 3]
        _claim(session, first)
        first = _status(db_session_factory, first.id)
        assert jobs.queue_position(session=session, job=first) is None
        assert jobs.queue_position(session=session, job=third) == 2


def test_two_concurrent_claims_one_wins(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
    barrier = threading.Barrier(2)
    results: list[Job | None] = []

    def claim(worker: str) -> None:
        with db_session_factory() as own:
            barrier.wait()
            results.append(_claim(own, job, worker))

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if r is not None]
    assert len(results) == 2 and len(winners) == 1
    stored = _status(db_session_factory, job.id)
    assert (stored.status, stored.attempts, stored.worker) == ("running", 1, winners[0].worker)


def test_claim_leaves_fresh_running_and_finished_jobs_alone(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        claimed = _claim(session, job)
        assert _claim(session, job, "w2") is None
        jobs.complete_job(session=session, job_id=job.id, result={"verdict": "REAL"}, attempt=claimed.attempts)
        assert _claim(session, job, "w3") is None
    stored = _status(db_session_factory, job.id)
    assert (stored.status, stored.attempts, stored.worker) == ("succeeded", 1, "w1")


def test_stale_running_job_is_reclaimed_until_attempts_run_out(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        for attempt in (1, 2, 3):
            assert _claim(session, job, f"w{attempt}").attempts == attempt
            _age_heartbeat(session, job.id, 120)
        assert _claim(session, job, "w4") is None
    stored = _status(db_session_factory, job.id)
    assert (stored.status, stored.error_code, stored.attempts) == ("failed", "worker_lost", 3)


def test_status_never_moves_backwards(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        claimed = _claim(session, job)
        assert jobs.fail_job(session=session, job_id=job.id, code="not_a_video", message="no video stream")
        assert not jobs.complete_job(session=session, job_id=job.id, result={"verdict": "FAKE"})
        assert not jobs.cancel_running_job(session=session, job_id=job.id)
        assert not jobs.fail_job(session=session, job_id=job.id, code="other", message="again")
        assert jobs.record_progress(session=session, job_id=job.id, frames_done=5, frames_total=9,
                                    attempt=claimed.attempts) is True
        assert _claim(session, job, "w2") is None
        _age_heartbeat(session, job.id, 600)
        assert jobs.reap_stale_jobs(session=session, stale_after_s=1, max_attempts=3) == []
        assert jobs.request_cancel(session=session, owner="alice", job_id=job.id).status == "failed"
        session.commit()
    stored = _status(db_session_factory, job.id)
    assert (stored.status, stored.error_code, stored.result, stored.progress_done) == (
        "failed", "not_a_video", None, 0)


def test_a_superseded_attempt_changes_nothing(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        first = _claim(session, job, "w1").attempts
        _age_heartbeat(session, job.id, 120)
        second = _claim(session, job, "w2").attempts
        assert jobs.record_progress(session=session, job_id=job.id, frames_done=3, frames_total=10,
                                    attempt=first) is True
        assert not jobs.complete_job(session=session, job_id=job.id, result={"verdict": "FAKE"}, attempt=first)
        assert jobs.complete_job(session=session, job_id=job.id, result={"verdict": "REAL"}, attempt=second)
    stored = _status(db_session_factory, job.id)
    assert (stored.status, stored.verdict, stored.attempts, stored.worker) == ("succeeded", "REAL", 2, "w2")


def test_cancel_queued_job_is_immediate(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        cancelled = jobs.request_cancel(session=session, owner="alice", job_id=job.id)
        session.commit()
        assert cancelled.status == "cancelled" and cancelled.finished_at is not None
        assert _claim(session, job) is None
    assert _status(db_session_factory, job.id).status == "cancelled"


def test_cancel_running_job_is_cooperative(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        claimed = _claim(session, job)
        assert jobs.record_progress(session=session, job_id=job.id, frames_done=1, frames_total=4,
                                    attempt=claimed.attempts) is False
        requested = jobs.request_cancel(session=session, owner="alice", job_id=job.id)
        session.commit()
        assert (requested.status, requested.cancel_requested) == ("running", True)
        assert jobs.record_progress(session=session, job_id=job.id, frames_done=2, frames_total=4,
                                    attempt=claimed.attempts) is True
        assert jobs.cancel_running_job(session=session, job_id=job.id, attempt=claimed.attempts)
    assert _status(db_session_factory, job.id).status == "cancelled"


def test_cancelling_a_finished_job_changes_nothing(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        _claim(session, job)
        jobs.complete_job(session=session, job_id=job.id, result={"verdict": "REAL", "fake_probability": 0.1})
        before = _status(db_session_factory, job.id)
        after = jobs.request_cancel(session=session, owner="alice", job_id=job.id)
        session.commit()
    assert (after.status, after.cancel_requested, after.updated_at) == ("succeeded", False, before.updated_at)


def test_progress_stores_partial_windows_and_completion_replaces_them(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        attempt = _claim(session, job).attempts
        jobs.record_progress(session=session, job_id=job.id, frames_done=8, frames_total=20, attempt=attempt,
                             windows=[Window(0, 0, 7, 0.0, 0.7, 0.25), Window(1, 0, 7, 0.0, 0.7, 0.5)])
        partial = jobs.job_windows(session=session, job_id=job.id)
        running = _status(db_session_factory, job.id)
        result = {"verdict": "FAKE", "fake_probability": 0.8, "tracks": [
            {"id": 0, "windows": [{"start_frame": 0, "end_frame": 7, "start_s": 0.0, "end_s": 0.7,
                                   "fake_probability": 0.9}]}]}
        files = [StoredArtifact(name="heatmap-t0-w0.png", media_type="image/png", size=10,
                                path=f"{job.id}/1/heatmap-t0-w0.png", track_id=0, description="heat")]
        assert jobs.complete_job(session=session, job_id=job.id, result=result, artifacts=files, attempt=attempt)
        final = jobs.job_windows(session=session, job_id=job.id)
        artifact = jobs.get_artifact(session=session, owner="alice", job_id=job.id, name="heatmap-t0-w0.png")
        assert jobs.get_artifact(session=session, owner="bob", job_id=job.id, name="heatmap-t0-w0.png") is None
        listed = jobs.list_artifacts(session=session, job_id=job.id)
    assert [(w.track_id, w.fake_probability) for w in partial] == [(0, 0.25), (1, 0.5)]
    assert (running.progress_done, running.progress_total) == (8, 20)
    assert [(w.track_id, w.end_frame, w.fake_probability) for w in final] == [(0, 7, 0.9)]
    assert (artifact.media_type, artifact.size, artifact.track_id) == ("image/png", 10, 0)
    assert [a.name for a in listed] == ["heatmap-t0-w0.png"]
    stored = _status(db_session_factory, job.id)
    assert (stored.verdict, stored.fake_probability, stored.result) == ("FAKE", 0.8, result)
    assert stored.progress_done == 20


def test_reaper_requeues_then_fails_lost_jobs(db_session_factory):
    with db_session_factory() as session:
        lost, fresh, exhausted = _new(session), _new(session), _new(session)
        for job in (lost, fresh, exhausted):
            _claim(session, job)
        session.execute(update(Job).where(Job.id == exhausted.id).values(attempts=3))
        session.commit()
        _age_heartbeat(session, lost.id, 300)
        _age_heartbeat(session, exhausted.id, 300)
        requeued = jobs.reap_stale_jobs(session=session, stale_after_s=60, max_attempts=3)
        again = jobs.reap_stale_jobs(session=session, stale_after_s=60, max_attempts=3)
        reclaimed = _claim(session, lost, "w2")
    assert (requeued, again) == ([lost.id], [])
    assert reclaimed.attempts == 2
    assert _status(db_session_factory, fresh.id).status == "running"
    gone = _status(db_session_factory, exhausted.id)
    assert (gone.status, gone.error_code) == ("failed", "worker_lost")


def test_heartbeat_keeps_a_job_from_being_reaped(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        attempt = _claim(session, job).attempts
        _age_heartbeat(session, job.id, 300)
        assert jobs.heartbeat(session=session, job_id=job.id, attempt=attempt) is False
        assert jobs.reap_stale_jobs(session=session, stale_after_s=60, max_attempts=3) == []
    assert _status(db_session_factory, job.id).status == "running"


def test_eta_from_progress(db_session_factory):
    with db_session_factory() as session:
        job = _new(session)
        assert jobs.estimate_eta_s(job) is None
        _claim(session, job)
        started = utcnow() - timedelta(seconds=10)
        session.execute(update(Job).where(Job.id == job.id).values(
            started_at=started, progress_at=started + timedelta(seconds=10), progress_done=25, progress_total=100))
        session.commit()
        running = _status(db_session_factory, job.id)
    eta = jobs.estimate_eta_s(running, now=running.progress_at)
    assert eta == pytest.approx(30.0)
    assert jobs.estimate_eta_s(running, now=running.progress_at + timedelta(seconds=50)) == 0.0
