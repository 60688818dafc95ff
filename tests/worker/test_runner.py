"""The runner in-process, on the test's real database: claim rules, typed failures, progress."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import timedelta

from shared.db import jobs, retention
from shared.db.models import Job, utcnow
from shared.model.types import Progress, WindowScore
from shared.storage import make_store
from worker.context import worker_context
from worker.progress import ProgressReporter
from worker.runner import Outcome, run_job
from tests.worker.conftest import job_row


def test_bytes_that_are_not_a_video_fail_with_their_code(worker_settings, queue_job, db_session_factory, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    job_id = queue_job(junk)
    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.FAILED
    job = job_row(db_session_factory, job_id)
    assert (job.status, job.error_code, job.attempts) == ("failed", "not_a_video", 1)
    assert job.error_message


def test_missing_upload_fails_with_video_not_found(worker_settings, queue_job, db_session_factory):
    job_id = queue_job(None)
    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.FAILED
    assert job_row(db_session_factory, job_id).error_code == "video_not_found"


def test_invalid_stored_options_fail_without_retry(worker_settings, queue_job, db_session_factory, short_clip):
    job_id = queue_job(short_clip, params={"sequence_length": "many"})
    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.FAILED
    assert job_row(db_session_factory, job_id).error_code == "invalid_options"


def test_missing_weights_fail_with_weights_not_found(worker_settings, queue_job, db_session_factory, short_clip):
    job_id = queue_job(short_clip, params={"weights": "absent.pt", "face_detector": "none"})
    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.FAILED
    assert job_row(db_session_factory, job_id).error_code == "weights_not_found"


def test_finished_or_cancelled_jobs_are_skipped(worker_settings, queue_job, db_session_factory, short_clip):
    job_id = queue_job(short_clip)
    with db_session_factory() as session:
        jobs.request_cancel(session=session, owner="local", job_id=job_id)
        session.commit()
    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.SKIPPED
    job = job_row(db_session_factory, job_id)
    assert (job.status, job.attempts) == ("cancelled", 0)


def test_reporter_throttles_writes_keeps_windows_and_sees_cancellation(worker_settings, queue_job,
                                                                       db_session_factory, short_clip):
    job_id = queue_job(short_clip)
    with db_session_factory() as session:
        attempt = jobs.claim_job(session=session, job_id=job_id, worker="t", stale_after_s=60).attempts
    windows = [WindowScore(0, i, i + 7, i / 10, (i + 7) / 10, 0.1 * i) for i in range(3)]
    with ProgressReporter(db_session_factory, job_id=job_id, attempt=attempt, heartbeat_every_s=0.1) as reporter:
        reporter.on_progress(Progress(frames_done=4, frames_total=20, windows=(windows[0],)))
        reporter.on_progress(Progress(frames_done=8, frames_total=20, windows=(windows[1],)))  # within 2 s: held
        with db_session_factory() as session:
            held = (session.get(Job, job_id).progress_done, len(jobs.job_windows(session=session, job_id=job_id)))
        reporter.on_progress(Progress(frames_done=20, frames_total=20, windows=(windows[2],)))  # final: written
        with db_session_factory() as session:
            final = (session.get(Job, job_id).progress_done, len(jobs.job_windows(session=session, job_id=job_id)))
            jobs.request_cancel(session=session, owner="local", job_id=job_id)
            session.commit()
        for _ in range(50):
            if reporter.should_stop():
                break
            time.sleep(0.1)
    assert held == (4, 1)
    assert final == (20, 3)
    assert reporter.should_stop() and not reporter.superseded


def test_context_is_built_once_per_process(worker_settings):
    first = worker_context(worker_settings)
    assert worker_context(worker_settings) is first
    assert worker_context(replace(worker_settings, job_max_attempts=7)) is not first


def test_the_upload_is_removed_when_its_job_ends(worker_settings, queue_job, db_session_factory, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    job_id = queue_job(junk)
    upload = worker_settings.uploads_dir / job_row(db_session_factory, job_id).stored_name
    streaming_in = worker_settings.uploads_dir / "no-job-yet.mp4"  # an upload whose job row is not written yet
    streaming_in.write_bytes(b"partial")
    other = tmp_path / "other.mp4"
    other.write_bytes(b"queued, not run")
    waiting = queue_job(other)
    waiting_upload = worker_settings.uploads_dir / job_row(db_session_factory, waiting).stored_name
    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.FAILED
    assert not upload.exists()
    assert streaming_in.exists() and waiting_upload.exists()


def test_uploads_are_kept_for_the_retention_period(worker_settings, queue_job, db_session_factory, tmp_path):
    settings = replace(worker_settings, upload_retention_days=7)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    job_id = queue_job(junk)
    upload = settings.uploads_dir / job_row(db_session_factory, job_id).stored_name
    assert run_job(job_id, context=worker_context(settings)) is Outcome.FAILED
    assert upload.exists()
    with db_session_factory() as session:
        later = utcnow() + timedelta(days=8)
        assert retention.sweep_uploads(session=session, store=make_store(settings), keep_days=7, now=later) == 0
        old = time.time() - 8 * 86_400
        os.utime(upload, (old, old))
        assert retention.sweep_uploads(session=session, store=make_store(settings), keep_days=7, now=later) == 1
    assert not upload.exists()


def test_a_jobs_end_removes_its_upload_without_walking_the_store(worker_settings, queue_job, db_session_factory,
                                                                  tmp_path, monkeypatch):
    """The end of one job looks its own upload up: it does not list every stored upload, which made an
    overnight batch quadratic (each item's end walked every item still queued)."""
    junk, other = tmp_path / "junk.mp4", tmp_path / "other.mp4"
    junk.write_bytes(b"not a video" * 100)
    other.write_bytes(b"queued, not run")
    job_id, waiting = queue_job(junk), queue_job(other)
    upload = worker_settings.uploads_dir / job_row(db_session_factory, job_id).stored_name
    waiting_upload = worker_settings.uploads_dir / job_row(db_session_factory, waiting).stored_name
    context = worker_context(worker_settings)
    walked = []
    listing = context.store.list
    monkeypatch.setattr(context.store, "list", lambda *args, **kwargs: walked.append(args) or listing(*args, **kwargs))

    assert run_job(job_id, context=context) is Outcome.FAILED

    assert not upload.exists() and waiting_upload.exists()
    assert [args for args in walked if str(args[0]).startswith("uploads")] == []  # its own checkpoints only


def test_an_upload_another_job_still_holds_stays(worker_settings, queue_job, db_session_factory, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    first, second = queue_job(junk), queue_job(junk)  # the same file: one stored upload for both
    upload = worker_settings.uploads_dir / job_row(db_session_factory, first).stored_name
    assert job_row(db_session_factory, second).stored_name == upload.name

    assert run_job(first, context=worker_context(worker_settings)) is Outcome.FAILED
    assert upload.exists()  # the second job has not run yet
    assert run_job(second, context=worker_context(worker_settings)) is Outcome.FAILED
    assert not upload.exists()


def test_an_upload_no_job_names_is_removed_once_it_is_a_day_old(worker_settings, db_session_factory):
    """Left by a crash between publishing and committing, or by two jobs sharing it deleted at once:
    no job will ever release it. One on its way in (seconds old) stays; so does an old-timed one first
    seen unnamed just now (an import's hard link keeps its source's time while it is hashed and probed)."""
    from shared.db.retention import ORPHAN_CONFIRM_S, ORPHAN_UPLOAD_AFTER_S

    worker_settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    arriving = worker_settings.uploads_dir / "arriving.mp4"
    arriving.write_bytes(b"its job commits in a moment")
    for keep_days in (0, 7):  # with uploads kept for a week too: an orphan is not a kept upload
        orphan = worker_settings.uploads_dir / f"left-behind-{keep_days}.mp4"
        orphan.write_bytes(b"nobody's")
        old = time.time() - ORPHAN_UPLOAD_AFTER_S - 60
        os.utime(orphan, (old, old))
        seen: dict[str, float] = {}
        with db_session_factory() as session:
            store = make_store(worker_settings)
            assert retention.sweep_uploads(session=session, store=store, keep_days=keep_days, orphans=seen) == 0
            assert orphan.exists() and set(seen) == {orphan.name}  # first seen unnamed: not yet
            seen[orphan.name] -= ORPHAN_CONFIRM_S  # a sweep an hour later finds it still unnamed
            assert retention.sweep_uploads(session=session, store=store, keep_days=keep_days, orphans=seen) == 1
        assert not orphan.exists() and arriving.exists() and seen == {}
