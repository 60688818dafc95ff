"""Keyword-only data access for batches: a set of videos with the same settings; its items are jobs.

A batch's state is derived from its items' statuses, never stored, so it cannot disagree with them.
Writes flush; the caller commits (the web commits an item before it enqueues its task, as for jobs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from shared.db.jobs import create_job, request_cancel
from shared.db.models import Artifact, Batch, Job, JobStatus, utcnow

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
# The face thumbnail of a job's most suspicious window: the engine names its pictures by rank, most
# suspicious first (shared.model.stages.assembly: rank<N>-track<T>-f<frame>-face.png).
TOP_FACE_PATTERN = "rank1-%-face.png"
MAX_BATCHES_LISTED = 200


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch got: items per status, and frames analysed over frames known so far."""

    counts: dict[str, int] = field(default_factory=dict)
    frames_done: int = 0
    frames_total: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return self.total - sum(self.counts.get(status, 0) for status in ACTIVE)

    @property
    def finished(self) -> bool:
        """Every item ended (an empty batch has not finished: its files are still to come)."""
        return self.total > 0 and self.done == self.total


def create_batch(*, session: Session, owner: str, name: str, params: Mapping[str, Any]) -> Batch:
    """Add an empty batch (flushed, not committed)."""
    batch = Batch(owner=owner, name=name[:500], params=dict(params), created_at=utcnow())
    session.add(batch)
    session.flush()
    return batch


def get_batch(*, session: Session, owner: str | None, batch_id: str) -> Batch | None:
    """The owner's batch; another owner's is indistinguishable from none. `owner=None`: any owner (an admin)."""
    return session.scalar(select(Batch).where(Batch.id == batch_id, _owned_by(owner)))


def list_batches(*, session: Session, owner: str | None, limit: int = 50) -> list[Batch]:
    """The owner's batches (None: every owner's), newest first."""
    limit = max(1, min(limit, MAX_BATCHES_LISTED))
    query = select(Batch).where(_owned_by(owner)).order_by(Batch.created_at.desc(), Batch.id.desc())
    return list(session.scalars(query.limit(limit)))


def _owned_by(owner: str | None):
    return true() if owner is None else Batch.owner == owner


def batch_items(*, session: Session, batch_id: str) -> list[Job]:
    """The batch's jobs in submission order."""
    query = select(Job).where(Job.batch_id == batch_id).order_by(Job.batch_position, Job.created_at, Job.id)
    return list(session.scalars(query))


def top_face_thumbnails(*, session: Session, batch_id: str) -> dict[str, Artifact]:
    """Each item's most suspicious face thumbnail by job id, for the whole batch in one query."""
    query = (select(Artifact).join(Job, Artifact.job_id == Job.id)
             .where(Job.batch_id == batch_id, Artifact.name.like(TOP_FACE_PATTERN)))
    return {artifact.job_id: artifact for artifact in session.scalars(query)}


def batch_progress(*, session: Session, batch_id: str) -> BatchProgress:
    """Items per status and frame progress, in one query."""
    return batches_progress(session=session, batch_ids=[batch_id])[batch_id]


def batches_progress(*, session: Session, batch_ids: list[str]) -> dict[str, BatchProgress]:
    """`batch_progress` of each batch (an empty batch too), in one query for all of them: a list of 200
    batches is one round trip, not 200."""
    counts = {batch_id: {status.value: 0 for status in JobStatus} for batch_id in batch_ids}
    frames = {batch_id: [0, 0] for batch_id in batch_ids}
    if batch_ids:
        rows = session.execute(
            select(Job.batch_id, Job.status, func.count(), func.coalesce(func.sum(Job.progress_done), 0),
                   func.coalesce(func.sum(Job.progress_total), 0))
            .where(Job.batch_id.in_(batch_ids)).group_by(Job.batch_id, Job.status)
        ).all()
        for batch_id, status, count, frames_done, frames_total in rows:
            counts[batch_id][status] = int(count)
            frames[batch_id][0] += int(frames_done)
            frames[batch_id][1] += int(frames_total)
    return {batch_id: BatchProgress(counts=counts[batch_id], frames_done=frames[batch_id][0],
                                    frames_total=frames[batch_id][1]) for batch_id in batch_ids}


def next_position(*, session: Session, batch_id: str) -> int:
    """The position the next item of the batch gets (0-based, in arrival order)."""
    last = session.scalar(select(func.max(Job.batch_position)).where(Job.batch_id == batch_id))
    return 0 if last is None else int(last) + 1


def add_item(*, session: Session, batch: Batch, upload_name: str, stored_name: str, upload_size: int,
             upload_sha256: str, lane: str) -> Job:
    """A queued job for one file of the batch, with the batch's settings (flushed, not committed)."""
    return create_job(session=session, owner=batch.owner, params=batch.params, upload_name=upload_name,
                      stored_name=stored_name, upload_size=upload_size, upload_sha256=upload_sha256,
                      lane=lane, batch_id=batch.id, batch_position=next_position(session=session, batch_id=batch.id))


def add_failed_item(*, session: Session, batch: Batch, upload_name: str, upload_size: int, upload_sha256: str,
                    code: str, message: str) -> Job:
    """A file the service refused before analysis (not a video, unsupported, ...): recorded as a failed
    item, so the batch's report lists it and the other files go on. No upload is kept."""
    job = create_job(session=session, owner=batch.owner, params=batch.params, upload_name=upload_name,
                     stored_name="", upload_size=upload_size, upload_sha256=upload_sha256, lane="batch",
                     batch_id=batch.id, batch_position=next_position(session=session, batch_id=batch.id))
    now = utcnow()
    job.status, job.error_code, job.error_message = JobStatus.FAILED.value, code[:64], message
    job.finished_at = job.updated_at = now
    job.sent_at = None
    session.flush()
    return job


def retry_failed_items(*, session: Session, batch: Batch, upload_exists: Callable[[str], bool]) -> tuple[list[Job], list[Job]]:
    """Replace each failed item whose upload is still stored by a new queued job at the same position.

    Returns (new jobs, failed items that cannot be retried because their file is gone). The failed
    rows are deleted: the batch shows one row per file, the latest attempt. Flushed, not committed;
    the caller commits, then enqueues the new jobs.
    """
    retried, impossible = [], []
    for item in batch_items(session=session, batch_id=batch.id):
        if item.status != JobStatus.FAILED.value:
            continue
        if not item.stored_name or not upload_exists(item.stored_name):
            impossible.append(item)
            continue
        job = create_job(session=session, owner=batch.owner, params=item.params, upload_name=item.upload_name,
                         stored_name=item.stored_name, upload_size=item.upload_size,
                         upload_sha256=item.upload_sha256, lane=item.lane, batch_id=batch.id,
                         batch_position=item.batch_position)
        session.delete(item)
        retried.append(job)
    session.flush()
    return retried, impossible


def cancel_batch(*, session: Session, batch: Batch) -> int:
    """Cancel every queued item and ask every running one to stop; returns how many were active."""
    active = [item.id for item in batch_items(session=session, batch_id=batch.id) if item.status in ACTIVE]
    for job_id in active:
        request_cancel(session=session, owner=batch.owner, job_id=job_id)
    return len(active)


def delete_batch_row(*, session: Session, batch: Batch) -> None:
    """Delete the batch row once its items are gone (flushed)."""
    session.delete(batch)
    session.flush()
