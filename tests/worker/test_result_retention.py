"""RESULT_RETENTION_DAYS: ended jobs are deleted with their result, pictures and upload once it has passed."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.db import batches, jobs, retention
from shared.db.models import Batch, Job, utcnow
from shared.storage import make_store
from worker.context import worker_context
from worker.runner import Outcome, run_job


def test_jobs_past_the_retention_are_deleted_with_their_files_and_empty_batches(
        worker_settings, queue_job, db_session_factory, short_clip):
    settings = replace(worker_settings, upload_retention_days=30)
    old = queue_job(short_clip)
    recent = queue_job(short_clip, params={"face_detector": "none", "sequence_length": 8, "precision": "fp32",
                                           "heatmaps": 1})  # other settings: analysed, not reused
    with db_session_factory() as session:
        batch = batches.create_batch(session=session, owner="local", name="night", params={})
        session.get(Job, old).batch_id = batch.id
        session.commit()
        batch_id = batch.id
    for job_id in (old, recent):
        assert run_job(job_id, context=worker_context(settings)) is Outcome.SUCCEEDED
    waiting = queue_job(short_clip)
    with db_session_factory() as session:
        session.get(Job, old).finished_at = utcnow() - timedelta(days=10)
        session.commit()
        assert jobs.list_artifacts(session=session, job_id=old)
    store = make_store(settings)

    with db_session_factory() as session:
        removed = retention.sweep_results(session=session, store=store, keep_days=7)

    assert removed == 1
    with db_session_factory() as session:
        assert session.get(Job, old) is None and session.get(Batch, batch_id) is None
        assert session.get(Job, recent).status == "succeeded" and session.get(Job, waiting).status == "queued"
        assert jobs.list_artifacts(session=session, job_id=old) == []
    assert not (settings.artifacts_dir / old).exists() and (settings.artifacts_dir / recent).exists()
    # The upload is shared with the waiting job (same file): it stays until that one is done with it.
    assert [obj.key for obj in store.list("uploads")]
