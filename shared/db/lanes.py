"""Data access for the queue lanes (shared.lanes): each job's lane, and moving a waiting job off the gpu lane."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from shared import lanes
from shared.db.models import Job, JobStatus, utcnow


def job_lanes(*, session: Session, job_ids: list[str]) -> dict[str, str]:
    """Each job's lane; a lane this code does not know (a newer version's) reads as interactive."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.lane).where(Job.id.in_(job_ids))).all()
    return {job_id: lane if lane in lanes.LANES else lanes.INTERACTIVE for job_id, lane in rows}


def move_off_gpu_lane(*, session: Session, job_id: str, sent_before_s: float) -> str | None:
    """Move a queued gpu-lane job, last sent more than `sent_before_s` ago, to the lane it would have had
    without a GPU worker (batch for a batch item, else interactive), and mark it sent now.

    Flushed, not committed: the caller sends the task, then commits. Returns the new lane, or None when
    the job is no longer a waiting gpu-lane job (another reaper moved it, a worker claimed it).
    """
    batch_id = session.scalar(select(Job.batch_id).where(Job.id == job_id))
    lane = lanes.BATCH if batch_id is not None else lanes.INTERACTIVE
    now = utcnow()
    cutoff = now - timedelta(seconds=sent_before_s)
    statement = (update(Job)
                 .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value, Job.lane == lanes.GPU,
                        or_(Job.sent_at.is_(None), Job.sent_at < cutoff))
                 .values(lane=lane, sent_at=now)
                 .execution_options(synchronize_session=False))
    return lane if session.execute(statement).rowcount > 0 else None
