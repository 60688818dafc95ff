"""Retention: deleting a finished job with its files, and uploads once their job has ended.

Rows go first, files after the commit: a crash in between leaves files without a row (the upload
sweep removes those of ended jobs), never a row whose files are gone.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db.jobs import owned_by
from shared.db.models import Artifact, Batch, Job, JobStatus, JobWindow, utcnow
from shared.storage import ARTIFACTS, CHECKPOINTS, UPLOADS, FileStore

ENDED = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)
SECONDS_PER_DAY = 86_400
LOOKUP_CHUNK = 500  # stored names per query: well under every database's bound-parameter limit


def delete_ended_job(*, session: Session, owner: str | None, job_id: str) -> str | None:
    """Delete the owner's job (None: any owner's, for an admin), its windows and artifact rows if the job
    has ended; commits.

    Returns the job's stored upload name, or None when no ended job of that owner has this id.
    The caller removes the files (`remove_job_files`), the upload only if `upload_in_use` says no.
    """
    stored_name = session.scalar(select(Job.stored_name).where(
        Job.id == job_id, owned_by(owner), Job.status.in_(ENDED)))
    if stored_name is None:
        return None
    session.execute(delete(JobWindow).where(JobWindow.job_id == job_id))
    session.execute(delete(Artifact).where(Artifact.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id, Job.status.in_(ENDED)))
    session.commit()
    return stored_name


def sweep_results(*, session: Session, store: FileStore, keep_days: float, now: datetime | None = None,
                  limit: int = 100) -> int:
    """Delete up to `limit` jobs that ended more than `keep_days` ago, with their results, timeline,
    artifacts and uploads, then the batches left empty by it; returns how many jobs. Commits."""
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    expired = list(session.execute(select(Job.id, Job.batch_id).where(
        Job.status.in_(ENDED), Job.finished_at < cutoff).order_by(Job.finished_at).limit(limit)).all())
    for job_id, _ in expired:
        stored_name = delete_ended_job(session=session, owner=None, job_id=job_id)
        if stored_name is None:
            continue
        shared = upload_in_use(session=session, stored_name=stored_name) if stored_name else True
        remove_job_files(store=store, job_id=job_id, stored_name=None if shared else stored_name)
    emptied = {batch_id for _, batch_id in expired if batch_id is not None}
    for batch_id in emptied:
        if session.scalar(select(Job.id).where(Job.batch_id == batch_id).limit(1)) is None:
            session.execute(delete(Batch).where(Batch.id == batch_id))
    session.commit()
    return len(expired)


def upload_in_use(*, session: Session, stored_name: str) -> bool:
    """Whether any job (another one sharing the file) still has this upload."""
    return session.scalar(select(Job.id).where(Job.stored_name == stored_name).limit(1)) is not None


def remove_job_files(*, store: FileStore, job_id: str, stored_name: str | None) -> None:
    """The job's upload (None: keep it) and its artifacts, from the store (and this machine's copies);
    whatever is already gone is fine."""
    if stored_name:
        remove_upload(store=store, stored_name=stored_name)
    if job_id and "/" not in job_id:
        store.delete_prefix(f"{ARTIFACTS}/{job_id}")
        store.delete_prefix(f"{CHECKPOINTS}/{job_id}")


def remove_upload(*, store: FileStore, stored_name: str) -> None:
    if stored_name and "/" not in stored_name and stored_name not in (".", ".."):
        store.delete(f"{UPLOADS}/{stored_name}")


def sweep_uploads(*, session: Session, store: FileStore, keep_days: float, now: datetime | None = None,
                  failed_batch_keep_days: float = 0) -> int:
    """Remove uploads whose job ended more than `keep_days` ago (0: as soon as it ended); returns how many.

    A failed batch item keeps its upload for at least `failed_batch_keep_days`, so the batch's
    "retry failed items" can run it again without the file being sent a second time.

    Walks the store's uploads, not the table: the store holds only the uploads still kept, so a sweep
    costs what is retained, not every job ever run. Files of running or queued jobs, and files with no
    job row (an upload still streaming in), are left alone.
    """
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    failed_cutoff = (now or utcnow()) - timedelta(days=max(keep_days, failed_batch_keep_days))
    # A file is never older than its job's end: skip the lookup for files too young to have expired.
    young_after = time.time() - keep_days * SECONDS_PER_DAY
    candidates = [obj.key.rsplit("/", 1)[-1] for obj in store.list(UPLOADS)
                  if obj.modified.timestamp() <= young_after and not obj.key.rsplit("/", 1)[-1].startswith(".")]
    removed = 0
    for start in range(0, len(candidates), LOOKUP_CHUNK):
        for name in expired_uploads(session=session, stored_names=candidates[start:start + LOOKUP_CHUNK], cutoff=cutoff,
                                    failed_batch_cutoff=failed_cutoff):
            remove_upload(store=store, stored_name=name)
            removed += 1
    return removed


def expired_uploads(*, session: Session, stored_names: Iterable[str], cutoff: datetime,
                    failed_batch_cutoff: datetime | None = None) -> list[str]:
    """Of `stored_names`, those whose jobs all ended at or before `cutoff` (failed batch items: at or
    before `failed_batch_cutoff`)."""
    names = list(stored_names)
    failed_item = (Job.status == JobStatus.FAILED.value) & Job.batch_id.is_not(None)
    retryable = failed_item & (Job.finished_at > (failed_batch_cutoff or cutoff))
    ended = set(session.scalars(select(Job.stored_name).where(
        Job.stored_name.in_(names), Job.status.in_(ENDED), Job.finished_at <= cutoff)))
    kept = set(session.scalars(select(Job.stored_name).where(
        Job.stored_name.in_(names), (Job.status.not_in(ENDED)) | (Job.finished_at > cutoff) | retryable)))
    return sorted(ended - kept)
