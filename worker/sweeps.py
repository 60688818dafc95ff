"""Retention sweeps that walk the whole store, on the reaper's timer rather than after every job.

A worker that ends a job removes that job's upload itself (`runner.release_ended_upload`: one lookup).
What no job end covers is found here, every RETENTION_SWEEP_EVERY_S by each worker's reaper: uploads
of jobs that ended without a worker (cancelled while queued), uploads whose UPLOAD_RETENTION_DAYS ran
out, and jobs past RESULT_RETENTION_DAYS. The upload sweep walks every stored upload; run after each
job, as it was, an overnight batch paid for every item still queued at every item's end (300 ms a job
with 10,000 items queued on PostgreSQL and a local store: quadratic in the batch).
"""
from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from shared.db import retention
from shared.settings import Settings
from shared.storage import FileStore, StorageRefusedError
from worker.progress import TRANSIENT_ERRORS

log = logging.getLogger(__name__)
# Each reaper sweeps this often; several workers' reapers overlap harmlessly (deleting is idempotent).
RETENTION_SWEEP_EVERY_S = 600.0


def sweep_retention(*, session_factory: sessionmaker[Session], store: FileStore, settings: Settings,
                    orphans: dict[str, float] | None = None) -> None:
    """Remove uploads past UPLOAD_RETENTION_DAYS (and orphans: `retention.sweep_uploads`, whose `orphans`
    the caller keeps between sweeps) and delete jobs past RESULT_RETENTION_DAYS. Best effort: a store or
    database outage is logged and the next sweep tries again."""
    try:
        with session_factory() as session:
            removed = retention.sweep_uploads(session=session, store=store, keep_days=settings.upload_retention_days,
                                              failed_batch_keep_days=settings.failed_batch_upload_retention_days,
                                              orphans=orphans)
    except (OSError, StorageRefusedError, *TRANSIENT_ERRORS) as exc:
        log.warning("upload retention sweep skipped: %s", exc)
        return
    if removed:
        log.info("removed %d upload(s) past their retention", removed)
    if settings.result_retention_days > 0:
        _sweep_results(session_factory=session_factory, store=store, settings=settings)


def _sweep_results(*, session_factory: sessionmaker[Session], store: FileStore, settings: Settings) -> None:
    """Delete jobs (results, pictures, uploads) ended over RESULT_RETENTION_DAYS ago; best effort, as above."""
    try:
        with session_factory() as session:
            removed = retention.sweep_results(session=session, store=store, keep_days=settings.result_retention_days)
    except (OSError, StorageRefusedError, *TRANSIENT_ERRORS) as exc:
        log.warning("result retention sweep skipped: %s", exc)
        return
    if removed:
        log.info("deleted %d job(s) past RESULT_RETENTION_DAYS", removed)
