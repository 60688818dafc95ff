"""What an owner holds, for the per-owner quotas: active jobs, and the bytes of uploads still stored.

An upload counts while the retention sweep (`retention.expired_uploads`) would keep it: its job is
queued or running, or ended within `keep_days` (UPLOAD_RETENTION_DAYS), or is a failed batch item
that ended within `failed_batch_keep_days` (kept for "retry failed"). Items refused on probing stored
nothing (no stored name) and never count. Reads only; nothing is committed.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import Job, JobStatus, utcnow

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def active_job_count(*, session: Session, owner: str) -> int:
    """The owner's queued and running jobs."""
    return session.scalar(select(func.count()).select_from(Job).where(Job.owner == owner, Job.status.in_(ACTIVE)))


def stored_upload_bytes(*, session: Session, owner: str, keep_days: float, failed_batch_keep_days: float,
                        now: datetime | None = None) -> int:
    """The sum of `upload_size` over the owner's jobs whose upload is still stored (see the module)."""
    now = now or utcnow()
    failed_item = (Job.status == JobStatus.FAILED.value) & Job.batch_id.is_not(None)
    kept = (Job.status.in_(ACTIVE)
            | (Job.finished_at > now - timedelta(days=keep_days))
            | (failed_item & (Job.finished_at > now - timedelta(days=max(keep_days, failed_batch_keep_days)))))
    total = session.scalar(select(func.coalesce(func.sum(Job.upload_size), 0)).where(
        Job.owner == owner, Job.stored_name != "", kept))
    return int(total or 0)
