"""Keyword-only data access for jobs: every state transition is one conditional UPDATE.

Transactions: the web-facing writes (`create_job`, `request_cancel`) flush but do not commit;
the caller commits (the web app commits *before* it enqueues the task). The worker-facing
transitions (`claim_job`, `heartbeat`, `record_progress`, `complete_job`, `fail_job`,
`cancel_running_job`, `reap_stale_jobs`) commit, because other processes must see them at once.
`record_resend` flushes only: the reaper sends the task, then commits. Reads commit nothing.

`sent_at` is when the job's task message was last sent (set at creation, because the web sends right
after committing; and at each requeue). A job queued and not sent for a while may have lost its
message; the reaper checks the broker and sends it again (see worker.reaper).

The optional `attempt` of the worker-facing functions is the `attempts` value the claim
returned: a worker whose job was reaped and claimed again by another worker then changes
nothing, so a job finishes exactly once.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Protocol, Sequence

from sqlalchemy import and_, delete, func, or_, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from shared.db.artifacts import StoredArtifact
from shared.db.models import Artifact, Job, JobStatus, JobWindow, utcnow

WORKER_LOST = "worker_lost"
MAX_LIST_LIMIT = 500


class InvalidCursorError(ValueError):
    """A list cursor that this module did not produce (or that was altered)."""


class WindowLike(Protocol):
    track_id: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    fake_probability: float


def create_job(
    *,
    session: Session,
    owner: str,
    params: Mapping[str, Any],
    upload_name: str,
    stored_name: str,
    upload_size: int,
    upload_sha256: str,
    job_id: str | None = None,
    lane: str = "interactive",
    batch_id: str | None = None,
    batch_position: int | None = None,
) -> Job:
    """Add a queued job (flushed, not committed: commit before enqueueing its task)."""
    now = utcnow()
    job = Job(
        owner=owner, status=JobStatus.QUEUED.value, created_at=now, updated_at=now,
        params=dict(params), upload_name=upload_name, stored_name=stored_name,
        upload_size=upload_size, upload_sha256=upload_sha256,
        progress_done=0, attempts=0, cancel_requested=False, sent_at=now,
        lane=lane, batch_id=batch_id, batch_position=batch_position,
    )
    if job_id is not None:
        job.id = job_id
    session.add(job)
    session.flush()
    return job


def get_job(*, session: Session, owner: str | None, job_id: str) -> Job | None:
    """The job `job_id` if `owner` owns it; another owner's job is indistinguishable from none.

    `owner=None` means any owner (an admin's lookups, never a default)."""
    return session.scalar(select(Job).where(Job.id == job_id, owned_by(owner)))


def owned_by(owner: str | None) -> ColumnElement[bool]:
    """The owner condition of a job lookup: that owner's jobs, or every job for None (an admin)."""
    return true() if owner is None else Job.owner == owner


def list_jobs(
    *, session: Session, owner: str | None, status: str | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[Job], str | None]:
    """Newest first, `limit` per page; returns the page and the cursor of the next page (None at the end).

    Raises InvalidCursorError for a cursor this function did not produce, ValueError for an
    unknown status or a limit outside 1..MAX_LIST_LIMIT.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
    query = select(Job).where(owned_by(owner))
    if status is not None:
        query = query.where(Job.status == JobStatus(status).value)
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < last_id))
        )
    rows = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return page, next_cursor


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the last job of the previous page."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError("invalid cursor") from None
    if created_at.tzinfo is None or not job_id or len(job_id) > 36:
        raise InvalidCursorError("invalid cursor")
    return created_at, job_id


def request_cancel(*, session: Session, owner: str | None, job_id: str) -> Job | None:
    """Queued → cancelled at once; running → cancel_requested (the worker stops between batches);
    a finished job is left unchanged. Flushed, not committed. None if there is no such job."""
    now = utcnow()
    owned = and_(Job.id == job_id, owned_by(owner))
    _update(session, and_(owned, Job.status == JobStatus.QUEUED.value), status=JobStatus.CANCELLED.value,
            cancel_requested=True, finished_at=now, updated_at=now)
    _update(session, and_(owned, Job.status == JobStatus.RUNNING.value), cancel_requested=True, updated_at=now)
    return _reload(session, owner=owner, job_id=job_id)


def queue_position(*, session: Session, job: Job) -> int | None:
    """1-based position among all queued jobs, oldest first; None when the job is not queued."""
    if job.status != JobStatus.QUEUED.value:
        return None
    ahead = session.scalar(
        select(func.count()).select_from(Job).where(
            Job.status == JobStatus.QUEUED.value,
            or_(Job.created_at < job.created_at, and_(Job.created_at == job.created_at, Job.id < job.id)),
        )
    )
    return int(ahead or 0) + 1


def job_windows(*, session: Session, job_id: str) -> list[JobWindow]:
    """The job's scored windows (partial while it runs), by track then time."""
    query = select(JobWindow).where(JobWindow.job_id == job_id)
    return list(session.scalars(query.order_by(JobWindow.track_id, JobWindow.start_frame, JobWindow.id)))


def list_artifacts(*, session: Session, job_id: str) -> list[Artifact]:
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)))


def get_artifact(*, session: Session, owner: str | None, job_id: str, name: str) -> Artifact | None:
    """The artifact `name` of `job_id`, scoped by the job's owner (None: any owner)."""
    query = select(Artifact).join(Job).where(Artifact.job_id == job_id, Artifact.name == name, owned_by(owner))
    return session.scalar(query)


def estimate_eta_s(job: Job, *, now: datetime | None = None) -> float | None:
    """Seconds left for a running job at its average speed so far; None until there is progress."""
    if job.status != JobStatus.RUNNING.value or not job.progress_total or not job.progress_done:
        return None
    if job.started_at is None or job.progress_at is None:
        return None
    elapsed = (job.progress_at - job.started_at).total_seconds()
    if elapsed <= 0:
        return None
    remaining = (job.progress_total - job.progress_done) * elapsed / job.progress_done
    since = ((now or utcnow()) - job.progress_at).total_seconds()
    return max(0.0, remaining - max(0.0, since))


def claim_job(
    *, session: Session, job_id: str, worker: str, stale_after_s: float, max_attempts: int | None = None
) -> Job | None:
    """Atomically move the job to running for `worker` (attempts + 1) and commit; returns it, or None.

    A queued job is claimed. A running job whose heartbeat is older than `stale_after_s` (its
    worker was lost) is claimed again, unless `max_attempts` attempts were used: then it fails
    with `worker_lost`. A finished job, or a running one with a fresh heartbeat, is left alone.
    """
    now = utcnow()
    stale = _stale(now, stale_after_s)
    claimable = or_(Job.status == JobStatus.QUEUED.value, stale)
    if max_attempts is not None:
        lost = and_(stale, Job.attempts >= max_attempts)
        _update(session, and_(Job.id == job_id, lost), **_failure(now, WORKER_LOST, _lost_message(max_attempts)))
        claimable = and_(claimable, or_(Job.status == JobStatus.QUEUED.value, Job.attempts < max_attempts))
    claimed = _update(
        session, and_(Job.id == job_id, claimable),
        status=JobStatus.RUNNING.value, attempts=Job.attempts + 1, worker=worker[:255],
        started_at=func.coalesce(Job.started_at, now), heartbeat_at=now, updated_at=now,
    )
    session.commit()
    return _reload(session, job_id=job_id) if claimed else None


def heartbeat(*, session: Session, job_id: str, attempt: int | None = None) -> bool:
    """Mark the running job alive and commit; True when its worker should stop (see record_progress)."""
    now = utcnow()
    alive = _update(session, _running(job_id, attempt), heartbeat_at=now)
    session.commit()
    return not alive or _cancel_requested(session, job_id)


def record_progress(
    *,
    session: Session,
    job_id: str,
    frames_done: int,
    frames_total: int | None,
    windows: Iterable[WindowLike] = (),
    attempt: int | None = None,
) -> bool:
    """Store progress and new timeline windows, refresh the heartbeat, commit.

    Returns True when the worker should stop: cancellation was requested, or the job is no
    longer running under this attempt (finished, or reaped and claimed by another worker).
    """
    now = utcnow()
    alive = _update(
        session, _running(job_id, attempt), progress_done=frames_done, progress_total=frames_total,
        progress_at=now, heartbeat_at=now, updated_at=now,
    )
    if not alive:
        session.rollback()
        return True
    session.add_all(_window_rows(job_id, windows))
    session.commit()
    return _cancel_requested(session, job_id)


def complete_job(
    *,
    session: Session,
    job_id: str,
    result: Mapping[str, Any],
    artifacts: Sequence[StoredArtifact] = (),
    attempt: int | None = None,
    reuse_key: str | None = None,
    reused_from: str | None = None,
) -> bool:
    """Running → succeeded with the engine's result JSON, its windows and artifact rows, in one
    transaction (write the artifact files first). False (nothing stored) if the job was not
    running under this attempt. `reuse_key` lets later jobs reuse this result (shared.db.reuse);
    `reused_from` names the job whose result this is a copy of."""
    now = utcnow()
    done = _update(
        session, _running(job_id, attempt), status=JobStatus.SUCCEEDED.value, result=dict(result),
        reuse_key=reuse_key, reused_from=reused_from,
        verdict=result.get("verdict"), fake_probability=result.get("fake_probability"),
        finished_at=now, updated_at=now, heartbeat_at=now, progress_at=now,
        progress_done=func.coalesce(Job.progress_total, Job.progress_done),
    )
    if not done:
        session.rollback()
        return False
    session.execute(delete(JobWindow).where(JobWindow.job_id == job_id))
    session.add_all(_window_rows(job_id, result_windows(result)))
    session.add_all(_artifact_rows(job_id, artifacts))
    session.commit()
    return True


def fail_job(*, session: Session, job_id: str, code: str, message: str, attempt: int | None = None) -> bool:
    """Running → failed with an error code and a message a person can act on; commits."""
    done = _update(session, _running(job_id, attempt), **_failure(utcnow(), code, message))
    session.commit()
    return done


def cancel_running_job(*, session: Session, job_id: str, attempt: int | None = None) -> bool:
    """Running → cancelled (the worker stopped at a cancellation request); commits."""
    now = utcnow()
    done = _update(session, _running(job_id, attempt), status=JobStatus.CANCELLED.value,
                   finished_at=now, updated_at=now)
    session.commit()
    return done


def release_job(*, session: Session, job_id: str, attempt: int) -> bool:
    """Running → queued: a worker gives its claim back before retrying after a transient error
    (the only way back to queued besides the reaper). Commits."""
    now = utcnow()
    _update(session, and_(_running(job_id, attempt), Job.cancel_requested.is_(True)),
            status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now)
    done = _update(session, _running(job_id, attempt), status=JobStatus.QUEUED.value, worker=None,
                   heartbeat_at=None, updated_at=now, sent_at=now)
    session.commit()
    return done


def reap_stale_jobs(*, session: Session, stale_after_s: float, max_attempts: int, commit: bool = True) -> list[str]:
    """Running jobs whose heartbeat stopped: requeue those with attempts left (status → queued;
    the caller must send their task again) and fail the others with `worker_lost`; a lost job
    whose cancellation was requested is cancelled. Commits unless `commit` is False: then the
    caller sends the tasks first and commits after, so a failed send leaves the jobs to reap again.

    Returns the ids requeued by this call; concurrent reapers never requeue the same job twice.
    """
    now = utcnow()
    stale = and_(Job.status == JobStatus.RUNNING.value, _stale(now, stale_after_s))
    _update(session, and_(stale, Job.cancel_requested.is_(True)), status=JobStatus.CANCELLED.value,
            finished_at=now, updated_at=now)
    _update(session, and_(stale, Job.attempts >= max_attempts),
            **_failure(now, WORKER_LOST, _lost_message(max_attempts)))
    requeued = []
    for job_id, attempts in session.execute(select(Job.id, Job.attempts).where(stale)).all():
        guard = and_(Job.id == job_id, stale, Job.attempts == attempts)
        if _update(session, guard, status=JobStatus.QUEUED.value, worker=None, heartbeat_at=None, updated_at=now,
                   sent_at=now):
            requeued.append(job_id)
    if commit:
        session.commit()
    return requeued


def hand_back_jobs(*, session: Session, workers: Sequence[str]) -> list[str]:
    """The running jobs of these worker processes (a worker shutting down) → queued at once, sent now;
    one whose cancellation was requested is cancelled instead. Flushed, not committed: the caller sends
    the tasks, then commits. The processes see at their next heartbeat that the job is no longer theirs
    and stop without writing anything. Returns the ids handed back."""
    names = [name[:255] for name in workers]
    if not names:
        return []
    now = utcnow()
    mine = and_(Job.status == JobStatus.RUNNING.value, Job.worker.in_(names))
    _update(session, and_(mine, Job.cancel_requested.is_(True)), status=JobStatus.CANCELLED.value,
            finished_at=now, updated_at=now)
    handed = []
    for job_id, attempts in session.execute(select(Job.id, Job.attempts).where(mine)).all():
        if _update(session, and_(Job.id == job_id, mine, Job.attempts == attempts), status=JobStatus.QUEUED.value,
                   worker=None, heartbeat_at=None, updated_at=now, sent_at=now):
            handed.append(job_id)
    return handed


def unsent_queued_jobs(*, session: Session, sent_before_s: float, limit: int = 500) -> list[str]:
    """Ids of queued jobs whose task was last sent more than `sent_before_s` ago (or at an unknown
    time), oldest first: their message may be lost, or they may just wait in a long queue."""
    cutoff = utcnow() - timedelta(seconds=sent_before_s)
    query = select(Job.id).where(Job.status == JobStatus.QUEUED.value, _sent_before(cutoff))
    return list(session.scalars(query.order_by(Job.created_at, Job.id).limit(limit)))


def record_resend(*, session: Session, job_id: str, sent_before_s: float) -> bool:
    """Mark a queued job's task as sent now, if it was last sent more than `sent_before_s` ago.

    Flushed, not committed: the caller sends the task, then commits. Of concurrent reapers only
    one wins the conditional UPDATE, so a lost message is sent again once, not once per reaper.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=sent_before_s)
    return _update(session, and_(Job.id == job_id, Job.status == JobStatus.QUEUED.value, _sent_before(cutoff)),
                   sent_at=now)


def result_windows(result: Mapping[str, Any]) -> list[dict]:
    """The windows of every track of an engine result, flattened with their track id."""
    windows = []
    for track in result.get("tracks") or ():
        for window in track.get("windows") or ():
            windows.append({**window, "track_id": track["id"]})
    return windows


def _update(session: Session, where: ColumnElement[bool], **values: Any) -> bool:
    statement = update(Job).where(where).values(**values).execution_options(synchronize_session=False)
    return session.execute(statement).rowcount > 0


def _reload(session: Session, *, job_id: str, owner: str | None = None) -> Job | None:
    query = select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    if owner is not None:
        query = query.where(Job.owner == owner)
    return session.scalar(query)


def _running(job_id: str, attempt: int | None) -> ColumnElement[bool]:
    where = and_(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
    return where if attempt is None else and_(where, Job.attempts == attempt)


def _stale(now: datetime, stale_after_s: float) -> ColumnElement[bool]:
    threshold = now - timedelta(seconds=stale_after_s)
    return and_(
        Job.status == JobStatus.RUNNING.value,
        or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < threshold),
    )


def _sent_before(cutoff: datetime) -> ColumnElement[bool]:
    return or_(Job.sent_at.is_(None), Job.sent_at < cutoff)


def _cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def _failure(now: datetime, code: str, message: str) -> dict[str, Any]:
    return {"status": JobStatus.FAILED.value, "error_code": code[:64], "error_message": message,
            "finished_at": now, "updated_at": now}


def _lost_message(max_attempts: int) -> str:
    return f"the worker running this job stopped responding {max_attempts} time(s); giving up"


def _window_rows(job_id: str, windows: Iterable[WindowLike | Mapping[str, Any]]) -> list[JobWindow]:
    fields = ("track_id", "start_frame", "end_frame", "start_s", "end_s", "fake_probability")
    rows = []
    for window in windows:
        get = window.get if isinstance(window, Mapping) else lambda name, w=window: getattr(w, name)
        rows.append(JobWindow(job_id=job_id, **{name: get(name) for name in fields}))
    return rows


def _artifact_rows(job_id: str, artifacts: Sequence[StoredArtifact]) -> list[Artifact]:
    return [
        Artifact(job_id=job_id, name=a.name, media_type=a.media_type, size=a.size, path=a.path,
                 track_id=a.track_id, description=a.description or "")
        for a in artifacts
    ]
