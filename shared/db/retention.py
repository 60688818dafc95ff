"""Retention: deleting a finished job with its files, and uploads once their job has ended.

Files go first, rows after, one job at a time: a job whose files could not be removed (the store is
down or refuses) keeps its rows, so the next attempt finds the files again; the rows are the only
record of where a job's files are. A crash in between leaves rows whose files are gone, which the next
attempt deletes: removing a file that is already gone counts as removed.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db.jobs import owned_by
from shared.db.models import Artifact, Batch, Job, JobStatus, JobWindow, utcnow
from shared.storage import (ARTIFACTS, CHECKPOINTS, UPLOADS, FileStore, StorageRefusedError,
                            StorageUnavailableError)

log = logging.getLogger(__name__)

ENDED = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)
SECONDS_PER_DAY = 86_400
LOOKUP_CHUNK = 500  # stored names per query: well under every database's bound-parameter limit
# A stored upload that no job row names is on its way in (being received or imported, or published
# with its job not yet committed) for seconds to minutes; one left behind (a crash in between, or two
# jobs sharing it deleted at the same moment, each leaving it to the other) is removed once it is this
# old AND a sweep first saw it unnamed this long ago: an import's hard link keeps its source's old
# time, so the file's age alone would take an upload that is still arriving.
ORPHAN_UPLOAD_AFTER_S = SECONDS_PER_DAY
ORPHAN_CONFIRM_S = 3600


def delete_job_with_files(*, session: Session, store: FileStore, owner: str | None, job_id: str) -> bool:
    """Delete the owner's ended job (None: any owner's, for an admin) with its files, then its rows; commits.

    Returns False when no ended job of that owner has this id. The upload stays while another job
    shares it. When a file cannot be removed, the store's error (StorageUnavailableError,
    StorageRefusedError) or OSError is raised before any row is touched: the job is kept, whole.
    """
    stored_name = session.scalar(select(Job.stored_name).where(
        Job.id == job_id, owned_by(owner), Job.status.in_(ENDED)))
    if stored_name is None:
        return False
    shared = not stored_name or upload_in_use(session=session, stored_name=stored_name, other_than=job_id)
    remove_job_files(store=store, job_id=job_id, stored_name=None if shared else stored_name)
    return delete_ended_job(session=session, owner=owner, job_id=job_id) is not None


def delete_ended_job(*, session: Session, owner: str | None, job_id: str) -> str | None:
    """Delete the rows of the owner's ended job (None: any owner's): the job, its windows and artifact
    rows; commits. Returns the job's stored upload name, or None when no ended job of that owner has this id.

    Rows only: remove the files first (`remove_job_files`, or `delete_job_with_files` for both), since
    once the rows are gone nothing finds the files again.
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
    artifacts and uploads, then the batches left empty by it; returns how many jobs. Commits.

    A job whose files could not be removed keeps its rows and is logged; the next sweep tries it again.
    An unavailable store ends the sweep there (every later job would wait on it the same way).
    """
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    expired = list(session.execute(select(Job.id, Job.batch_id).where(
        Job.status.in_(ENDED), Job.finished_at < cutoff).order_by(Job.finished_at).limit(limit)).all())
    emptied: set = set()
    deleted = 0
    for job_id, batch_id in expired:
        try:
            if not delete_job_with_files(session=session, store=store, owner=None, job_id=job_id):
                continue
        except StorageUnavailableError as exc:
            log.warning("result retention: the store is unavailable; job %s and later ones kept for the next "
                        "sweep: %s", job_id, exc)
            break
        except (StorageRefusedError, OSError) as exc:
            log.warning("result retention: job %s kept for the next sweep, its files could not be removed: %s",
                        job_id, exc)
            continue
        deleted += 1
        if batch_id is not None:
            emptied.add(batch_id)
    _delete_empty_batches(session=session, batch_ids=emptied)
    return deleted


def _delete_empty_batches(*, session: Session, batch_ids: Iterable) -> None:
    for batch_id in batch_ids:
        if session.scalar(select(Job.id).where(Job.batch_id == batch_id).limit(1)) is None:
            session.execute(delete(Batch).where(Batch.id == batch_id))
    session.commit()


def upload_in_use(*, session: Session, stored_name: str, other_than: str | None = None) -> bool:
    """Whether any job (but `other_than`, the one being deleted) still has this upload."""
    query = select(Job.id).where(Job.stored_name == stored_name)
    if other_than is not None:
        query = query.where(Job.id != other_than)
    return session.scalar(query.limit(1)) is not None


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
                  failed_batch_keep_days: float = 0, orphans: dict[str, float] | None = None) -> int:
    """Remove uploads whose job ended more than `keep_days` ago (0: as soon as it ended); returns how many.

    A failed batch item keeps its upload for at least `failed_batch_keep_days`, so the batch's
    "retry failed items" can run it again without the file being sent a second time.

    Walks the store's uploads, not the table: the store holds only the uploads still kept, so a sweep
    costs what is retained, not every job ever run. Files of running or queued jobs are left alone.

    `orphans` carries from one sweep to the next when each upload that no job names was first seen
    unnamed (time.time()); one ORPHAN_UPLOAD_AFTER_S old and still unnamed ORPHAN_CONFIRM_S after that
    is removed (see ORPHAN_UPLOAD_AFTER_S). None: such files are left alone.
    """
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    failed_cutoff = (now or utcnow()) - timedelta(days=max(keep_days, failed_batch_keep_days))
    # File ages are real time. A file is never older than its job's end, so one younger than `keep_days`
    # cannot have expired; one no job names is an orphan only past ORPHAN_UPLOAD_AFTER_S.
    started = time.time()
    expirable_before = started - keep_days * SECONDS_PER_DAY
    orphan_before = started - ORPHAN_UPLOAD_AFTER_S if orphans is not None else float("-inf")
    modified = {obj.key.rsplit("/", 1)[-1]: obj.modified.timestamp() for obj in store.list(UPLOADS)}
    candidates = [name for name, when in modified.items()
                  if not name.startswith(".") and when <= max(expirable_before, orphan_before)]
    unnamed: set[str] = set()
    removed = 0
    for start in range(0, len(candidates), LOOKUP_CHUNK):
        chunk = candidates[start:start + LOOKUP_CHUNK]
        expired = expired_uploads(session=session, stored_names=chunk, cutoff=cutoff, failed_batch_cutoff=failed_cutoff)
        if orphans is not None:
            named = set(session.scalars(select(Job.stored_name).where(Job.stored_name.in_(chunk))))
            unnamed.update(name for name in chunk if name not in named and modified[name] <= orphan_before)
        for name in expired:
            remove_upload(store=store, stored_name=name)
            removed += 1
    if orphans is not None:
        for name in list(orphans):  # named since, or gone
            if name not in unnamed:
                del orphans[name]
        for name in sorted(unnamed):
            if started - orphans.setdefault(name, started) >= ORPHAN_CONFIRM_S:
                remove_upload(store=store, stored_name=name)
                del orphans[name]
                removed += 1
    return removed


def release_upload(*, session: Session, store: FileStore, stored_name: str, keep_days: float = 0,
                   failed_batch_keep_days: float = 0, now: datetime | None = None) -> bool:
    """Remove one upload if its retention has passed for every job that holds it (see `sweep_uploads`);
    whether it was removed. What a worker does for the job it just ended: one lookup, whatever the
    store holds, where `sweep_uploads` walks every stored upload."""
    if not stored_name:
        return False
    now = now or utcnow()
    expired = expired_uploads(session=session, stored_names=[stored_name], cutoff=now - timedelta(days=keep_days),
                              failed_batch_cutoff=now - timedelta(days=max(keep_days, failed_batch_keep_days)))
    if not expired:
        return False
    remove_upload(store=store, stored_name=stored_name)
    return True


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
