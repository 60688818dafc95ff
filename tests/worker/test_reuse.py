"""Result reuse through the runner: the same file, model and settings are analysed once."""
from __future__ import annotations

import shutil

from shared.db import jobs
from shared.db.reuse import reuse_key
from worker.context import worker_context
from worker.runner import Outcome, run_job
from tests.worker.conftest import FAST_PARAMS, job_row


def _artifacts(db_session_factory, job_id: str) -> list:
    with db_session_factory() as session:
        return [(a.name, a.path, a.size) for a in jobs.list_artifacts(session=session, job_id=job_id)]


def _windows(db_session_factory, job_id: str) -> list:
    with db_session_factory() as session:
        return [(w.track_id, w.start_frame, w.fake_probability) for w in jobs.job_windows(session=session, job_id=job_id)]


def test_the_same_file_and_settings_reuse_the_stored_result(worker_settings, queue_job, db_session_factory,
                                                            short_clip):
    context = worker_context(worker_settings)
    first = queue_job(short_clip)
    assert run_job(first, context=context) is Outcome.SUCCEEDED
    second = queue_job(short_clip, params={**FAST_PARAMS, "batch_size": 4})  # speed only: same answer
    assert run_job(second, context=context) is Outcome.SUCCEEDED

    original, copy = job_row(db_session_factory, first), job_row(db_session_factory, second)
    assert original.reuse_key and copy.reuse_key == original.reuse_key
    assert (original.reused_from, copy.reused_from) == (None, first)
    assert copy.result["reused_from"]["job_id"] == first
    assert copy.result["tracks"] == original.result["tracks"]
    assert (copy.verdict, copy.fake_probability) == (original.verdict, original.fake_probability)
    assert _windows(db_session_factory, second) == _windows(db_session_factory, first)
    # Its own copies of the pictures: deleting the first job must not take the second one's away.
    mine, theirs = _artifacts(db_session_factory, second), _artifacts(db_session_factory, first)
    assert [(n, s) for n, _, s in mine] == [(n, s) for n, _, s in theirs] and mine
    assert all(path.startswith(f"{second}/") for _, path, _ in mine)
    assert all((worker_settings.artifacts_dir / path).is_file() for _, path, _ in mine)


def test_other_settings_or_another_owner_analyse_again(worker_settings, queue_job, db_session_factory, short_clip):
    context = worker_context(worker_settings)
    first = queue_job(short_clip)
    assert run_job(first, context=context) is Outcome.SUCCEEDED
    other_settings = queue_job(short_clip, params={**FAST_PARAMS, "uncertain_band": 0.2})
    other_owner = queue_job(short_clip, owner="someone-else")
    for job_id in (other_settings, other_owner):
        assert run_job(job_id, context=context) is Outcome.SUCCEEDED
        job = job_row(db_session_factory, job_id)
        assert job.reused_from is None and "reused_from" not in job.result
    assert job_row(db_session_factory, other_settings).reuse_key != job_row(db_session_factory, first).reuse_key


def test_a_source_whose_pictures_are_gone_is_not_reused(worker_settings, queue_job, db_session_factory, short_clip):
    context = worker_context(worker_settings)
    first = queue_job(short_clip)
    assert run_job(first, context=context) is Outcome.SUCCEEDED
    assert _artifacts(db_session_factory, first)
    shutil.rmtree(worker_settings.artifacts_dir / first)
    second = queue_job(short_clip)
    assert run_job(second, context=context) is Outcome.SUCCEEDED
    assert job_row(db_session_factory, second).reused_from is None
    assert _artifacts(db_session_factory, second)


def test_the_key_ignores_speed_settings_and_names_but_not_what_changes_the_answer():
    base = dict(upload_sha256="a" * 64, model_sha256="b" * 64, device_type="cpu")
    options = {"weights": "x.pt", "batch_size": 32, "device": "auto", "frame_stride": 1, "threshold": None}
    key = reuse_key(**base, options=options)
    assert key == reuse_key(**base, options={**options, "weights": "y.pt", "batch_size": 4, "device": "cpu"})
    assert key != reuse_key(**base, options={**options, "frame_stride": 2})
    assert key != reuse_key(**base, options={**options, "threshold": 0.7})
    assert key != reuse_key(**{**base, "model_sha256": "c" * 64}, options=options)
    assert key != reuse_key(**{**base, "device_type": "cuda"}, options=options)
    assert key != reuse_key(**{**base, "upload_sha256": "d" * 64}, options=options)
