"""A failed batch item keeps its upload for FAILED_BATCH_UPLOAD_RETENTION_DAYS, so it can be retried."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import timedelta

from shared.db import batches, retention
from shared.db.models import Job, utcnow
from shared.storage import make_store
from worker.context import worker_context
from worker.runner import Outcome, run_job


def _in_a_batch(db_session_factory, job_id: str) -> None:
    with db_session_factory() as session:
        batch = batches.create_batch(session=session, owner="local", name="night", params={})
        job = session.get(Job, job_id)
        job.batch_id, job.batch_position = batch.id, 0
        session.commit()


def test_a_failed_batch_item_keeps_its_upload_and_a_single_job_does_not(worker_settings, queue_job,
                                                                         db_session_factory, tmp_path):
    settings = replace(worker_settings, upload_retention_days=0, failed_batch_upload_retention_days=2)
    single, item = tmp_path / "single.mp4", tmp_path / "item.mp4"
    single.write_bytes(b"not a video, single" * 50)
    item.write_bytes(b"not a video, batch item" * 50)
    single_id, item_id = queue_job(single), queue_job(item)
    _in_a_batch(db_session_factory, item_id)
    with db_session_factory() as session:
        names = {job_id: session.get(Job, job_id).stored_name for job_id in (single_id, item_id)}

    for job_id in (single_id, item_id):
        assert run_job(job_id, context=worker_context(settings)) is Outcome.FAILED

    assert not (settings.uploads_dir / names[single_id]).exists()
    kept = settings.uploads_dir / names[item_id]
    assert kept.exists()
    old = time.time() - 3 * 86_400
    os.utime(kept, (old, old))
    with db_session_factory() as session:
        assert retention.sweep_uploads(session=session, store=make_store(settings), keep_days=0,
                                       failed_batch_keep_days=2, now=utcnow() + timedelta(days=1)) == 0
        assert retention.sweep_uploads(session=session, store=make_store(settings), keep_days=0,
                                       failed_batch_keep_days=2, now=utcnow() + timedelta(days=3)) == 1
    assert not kept.exists()
