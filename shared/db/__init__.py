"""The job service's data layer: SQLAlchemy models, sessions, Alembic migrations, data access.

Nothing here imports torch, Flask or Celery. Importing this package does no work.

Sessions (`shared.db.session`):
    make_engine(url) -> Engine            SQLite: WAL, foreign keys, busy timeout; PostgreSQL: pre-ping
                                          (a bare ``postgresql://`` URL uses psycopg 3)
    make_session_factory(engine) -> sessionmaker   (expire_on_commit=False)
    upgrade(url)                          alembic upgrade head, programmatic, idempotent
    current_revision(url) / head_revision()

Models (`shared.db.models`): Job, JobWindow, Artifact, JobStatus (str enum), TERMINAL_STATUSES, utcnow().

Data access (`shared.db.jobs`, all keyword-only; see that module for which ones commit):
    create_job(session, owner, params, upload_name, stored_name, upload_size, upload_sha256[, job_id]) -> Job
    get_job(session, owner, job_id) -> Job | None
    list_jobs(session, owner, status=None, limit=50, cursor=None) -> (jobs, next_cursor)
        raises InvalidCursorError (a ValueError) for a bad cursor, ValueError for a bad status/limit
    request_cancel(session, owner, job_id) -> Job | None
    queue_position(session, job) -> int | None
    job_windows(session, job_id) -> list[JobWindow]
    list_artifacts(session, job_id) -> list[Artifact]
    get_artifact(session, owner, job_id, name) -> Artifact | None
    estimate_eta_s(job, now=None) -> float | None
    claim_job(session, job_id, worker, stale_after_s, max_attempts=None) -> Job | None
    heartbeat(session, job_id, attempt=None) -> bool (stop?)
    record_progress(session, job_id, frames_done, frames_total, windows, attempt=None) -> bool (stop?)
    complete_job(session, job_id, result, artifacts, attempt=None) -> bool
    fail_job(session, job_id, code, message, attempt=None) -> bool
    cancel_running_job(session, job_id, attempt=None) -> bool
    release_job(session, job_id, attempt) -> bool   running → queued before a retry
    reap_stale_jobs(session, stale_after_s, max_attempts) -> list[str]  (ids to enqueue again)
    unsent_queued_jobs(session, sent_before_s, limit=500) -> list[str]   queued, not sent for a while
    record_resend(session, job_id, sent_before_s) -> bool   sent_at = now (flushed; send, then commit)
    result_windows(result) -> list[dict]

Artifact files (`shared.db.artifacts`):
    write_artifacts(artifacts_dir, job_id, attempt, artifacts) -> list[StoredArtifact]
    remove_attempt(artifacts_dir, job_id, attempt)
"""
