"""Running one job: claim it, analyse the video with progress and cancellation, store the outcome.

Each outcome has its own handler. Engine errors are permanent (the job fails with their code);
database or broker outages are transient (the claim is released and the task retried).
"""
from __future__ import annotations

import enum
import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

from shared.db import jobs, retention, reuse
from shared.db.artifacts import remove_attempt, write_artifacts
from shared.db.models import Job
from shared.errors import AnalysisCancelled, EngineError, InputError, VideoNotFoundError
from shared.storage import ARTIFACTS, CHECKPOINTS, UPLOADS, StoredFileMissingError, StoreFolder, StorageRefusedError
from worker.context import WorkerContext
from worker.progress import TRANSIENT_ERRORS, ProgressReporter
from worker.webhooks import announce_ended

log = logging.getLogger(__name__)
INTERNAL_ERROR = "internal_error"


class Outcome(str, enum.Enum):
    SKIPPED = "skipped"  # finished already, or running elsewhere with a fresh heartbeat
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # reaped and claimed by another worker while this one ran


ENDED = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED)


class TransientError(Exception):
    """The database or the broker was briefly unreachable; the task should be retried."""


def run_job(job_id: str, *, context: WorkerContext) -> Outcome:
    """Claim `job_id` and run it to one outcome (exactly once across redeliveries)."""
    settings = context.settings
    try:
        with context.session_factory() as session:
            job = jobs.claim_job(session=session, job_id=job_id, worker=context.worker_name,
                                 stale_after_s=settings.heartbeat_timeout_s, max_attempts=settings.job_max_attempts)
    except TRANSIENT_ERRORS as exc:
        raise TransientError(f"cannot claim the job: {exc}") from exc
    if job is None:
        log.info("job %s: not claimable (finished, or running elsewhere); nothing to do", job_id)
        return Outcome.SKIPPED
    log.info("job %s: claimed by %s (attempt %d)", job_id, context.worker_name, job.attempts)
    try:
        outcome = _run_claimed(job, context=context)
    finally:
        if context.store.remote and job.stored_name and "/" not in job.stored_name:
            # This machine's copy of the upload; the store keeps the original.
            context.store.evict(f"{UPLOADS}/{job.stored_name}")
    if outcome in ENDED:
        announce_ended(job.id, context=context)  # its webhook (and its batch's, if it was the last item)
        _drop_checkpoints(job, context=context)
        release_ended_upload(job, context=context)
    return outcome


def _drop_checkpoints(job: Job, *, context: WorkerContext) -> None:
    """An ended job's feature recording is of no more use (a transient retry or a superseded attempt keeps it)."""
    try:
        context.store.delete_prefix(f"{CHECKPOINTS}/{job.id}")
    except (OSError, StorageRefusedError, *TRANSIENT_ERRORS) as exc:
        log.warning("job %s: its resume checkpoints were not removed: %s", job.id, exc)


def _run_claimed(job: Job, *, context: WorkerContext) -> Outcome:
    reporter = ProgressReporter(context.session_factory, job_id=job.id, attempt=job.attempts,
                                heartbeat_every_s=_heartbeat_every_s(context.settings.heartbeat_timeout_s))
    try:
        with reporter:
            options = _options(job, context=context)
            key = _reuse_key(job, options=options, context=context)
            reused = _find_reused(job, key=key, context=context)
            checkpoint = None if reused else _feature_checkpoint(job, key=key, options=options, context=context)
            result = None if reused else _analyze(job, options=options, context=context, reporter=reporter,
                                                  checkpoint=checkpoint)
    except AnalysisCancelled:
        return handle_cancelled(job, context=context, superseded=reporter.superseded)
    except EngineError as exc:
        return handle_failure(job, context=context, code=exc.code, message=exc.message)
    except TRANSIENT_ERRORS as exc:
        return handle_transient(job, context=context, error=exc)
    except Exception:
        log.exception("job %s: unexpected error", job.id)
        return handle_failure(job, context=context, code=INTERNAL_ERROR,
                              message="the analysis failed because of an internal error; see the worker log")
    if reused is not None:
        return handle_reused(job, context=context, source=reused[0], stored=reused[1], key=key)
    return handle_success(job, context=context, result=result, key=key,
                          reused_crops=checkpoint.reused_crops if checkpoint is not None else 0)


def _feature_checkpoint(job: Job, *, key: str, options: Any, context: WorkerContext) -> Any:
    """The job's recording of trunk features in the store (shared.model.resume), keyed by the answer's
    identity: an attempt with another checkpoint or settings starts a recording of its own."""
    if not context.settings.resume_checkpoints:
        return None
    from shared.model.resume import FeatureCheckpoint

    # The resolved backend and precision too: `auto` picks per machine, and a recording made in another
    # precision must not be replayed into this one (the crops would match, the features would not).
    engine = context.engine_cache.get(options)
    folder = hashlib.sha256(f"{key}|{engine.embedder.backend}|{engine.embedder.precision}".encode()).hexdigest()[:16]
    return FeatureCheckpoint(StoreFolder(context.store, f"{CHECKPOINTS}/{job.id}/{folder}"),
                             flush_rows=context.settings.resume_checkpoint_crops)


def _options(job: Job, *, context: WorkerContext) -> Any:
    from shared.options import AnalysisOptions

    params = dict(job.params or {})
    params.setdefault("device", context.settings.device)
    return AnalysisOptions.from_mapping(params)


def _reuse_key(job: Job, *, options: Any, context: WorkerContext) -> str:
    """The key of this job's answer; loads (or finds loaded) the engine, which the analysis needs anyway."""
    engine = context.engine_cache.get(options)
    return reuse.reuse_key(upload_sha256=job.upload_sha256, model_sha256=engine.spec.sha256,
                           device_type=engine.device.type, options=options.to_dict())


def _find_reused(job: Job, *, key: str, context: WorkerContext) -> tuple[Job, list] | None:
    """A stored result of the same file, model and settings, with its artifact files copied; or None."""
    with context.session_factory() as session:
        source = reuse.find_reusable(session=session, owner=job.owner, key=key, exclude_job_id=job.id)
        if source is None:
            return None
        stored = reuse.copy_artifacts(session=session, store=context.store, artifacts_dir=context.settings.artifacts_dir,
                                      source_job_id=source.id, job_id=job.id, attempt=job.attempts)
    return None if stored is None else (source, stored)


def _analyze(job: Job, *, options: Any, context: WorkerContext, reporter: ProgressReporter,
             checkpoint: Any = None) -> Any:
    from shared.model.pipeline import analyze_video

    video = _upload_path(context.store, job.stored_name)
    # The preview's temporary file beside the artifacts, so storing it (write_artifacts) is a rename.
    return analyze_video(video, options=options, cache=context.engine_cache, sha256=job.upload_sha256,
                         on_progress=reporter.on_progress, should_cancel=reporter.should_stop,
                         preview_dir=context.settings.artifacts_dir, feature_checkpoint=checkpoint)


def handle_success(job: Job, *, context: WorkerContext, result: Any, key: str | None = None,
                   reused_crops: int = 0) -> Outcome:
    """Write the artifact files, then the result, windows and artifact rows in one transaction."""
    stored = write_artifacts(artifacts_dir=context.settings.artifacts_dir, job_id=job.id, attempt=job.attempts,
                             artifacts=result.artifacts)
    document = result.to_dict()
    if reused_crops:  # this attempt resumed an earlier one's recording (shared.model.resume)
        document["resumed"] = {"crops_reused": reused_crops, "attempt": job.attempts}
    outcome = _complete(job, context=context, result=document, stored=stored, key=key)
    if outcome is Outcome.SUCCEEDED:
        log.info("job %s: succeeded (%s)", job.id, result.verdict)
    return outcome


def handle_reused(job: Job, *, context: WorkerContext, source: Job, stored: list, key: str) -> Outcome:
    """Store a copy of an earlier job's result (same file, model and settings) as this job's."""
    outcome = _complete(job, context=context, result=reuse.reused_result(source), stored=stored, key=key,
                        reused_from=str(source.id))
    if outcome is Outcome.SUCCEEDED:
        log.info("job %s: succeeded, reusing the result of job %s", job.id, source.id)
    return outcome


def _complete(job: Job, *, context: WorkerContext, result: dict, stored: list, key: str | None,
              reused_from: str | None = None) -> Outcome:
    """Publish the attempt's artifact files to the store, then commit the result that names them."""
    try:
        for artifact in stored:
            context.store.publish(f"{ARTIFACTS}/{artifact.path}")
        with context.session_factory() as session:
            done = jobs.complete_job(session=session, job_id=job.id, result=result, artifacts=stored,
                                     attempt=job.attempts, reuse_key=key, reused_from=reused_from)
    except TRANSIENT_ERRORS as exc:
        _discard_attempt(job, context=context)
        return handle_transient(job, context=context, error=exc)
    except StorageRefusedError as exc:  # the store refuses the writes (a policy, a bucket): retrying cannot help
        _discard_attempt(job, context=context)
        return handle_failure(job, context=context, code=exc.code, message=exc.message)
    if not done:
        _discard_attempt(job, context=context)
        log.warning("job %s: finished elsewhere while attempt %d ran; result dropped", job.id, job.attempts)
        return Outcome.SUPERSEDED
    return Outcome.SUCCEEDED


def handle_failure(job: Job, *, context: WorkerContext, code: str, message: str) -> Outcome:
    """A permanent failure: stored with its code and message, never retried."""
    return _store(job, context=context, outcome=Outcome.FAILED, action=lambda session: jobs.fail_job(
        session=session, job_id=job.id, code=code, message=message, attempt=job.attempts))


def handle_cancelled(job: Job, *, context: WorkerContext, superseded: bool) -> Outcome:
    if superseded:
        log.warning("job %s: attempt %d stopped; the job is no longer this worker's", job.id, job.attempts)
        return Outcome.SUPERSEDED
    return _store(job, context=context, outcome=Outcome.CANCELLED, action=lambda session: jobs.cancel_running_job(
        session=session, job_id=job.id, attempt=job.attempts))


def handle_transient(job: Job, *, context: WorkerContext, error: Exception) -> Outcome:
    """Give the job back to the queue (if the database lets us) and ask for a retry."""
    try:
        with context.session_factory() as session:
            jobs.release_job(session=session, job_id=job.id, attempt=job.attempts)
    except TRANSIENT_ERRORS:
        log.warning("job %s: cannot release the claim; the reaper will requeue it", job.id)
    raise TransientError(str(error)) from error


def _store(job: Job, *, context: WorkerContext, outcome: Outcome, action: Callable[[Any], bool]) -> Outcome:
    try:
        with context.session_factory() as session:
            done = action(session)
    except TRANSIENT_ERRORS as exc:
        return handle_transient(job, context=context, error=exc)
    if not done:
        return Outcome.SUPERSEDED
    log.info("job %s: %s", job.id, outcome.value)
    return outcome


def release_ended_upload(job: Job, *, context: WorkerContext) -> None:
    """Remove the upload of the job that just ended when its retention is over already (UPLOAD_RETENTION_DAYS
    0, and no other job still holds the same file): one lookup, whatever else the store holds. Uploads that
    expire later, or whose job ended without a worker, are the reaper's timed sweep's (worker/sweeps.py).
    Best effort: the job's outcome is stored already, and that sweep tries again."""
    settings = context.settings
    try:
        with context.session_factory() as session:
            retention.release_upload(session=session, store=context.store, stored_name=job.stored_name,
                                     keep_days=settings.upload_retention_days,
                                     failed_batch_keep_days=settings.failed_batch_upload_retention_days)
    except (OSError, StorageRefusedError, *TRANSIENT_ERRORS) as exc:
        log.warning("job %s: its upload was not removed now (%s); the retention sweep will", job.id, exc)


def _discard_attempt(job: Job, *, context: WorkerContext) -> None:
    """The files one attempt wrote, here and in the store (its job finished elsewhere, or storing failed)."""
    remove_attempt(artifacts_dir=context.settings.artifacts_dir, job_id=job.id, attempt=job.attempts)
    try:
        context.store.delete_prefix(f"{ARTIFACTS}/{job.id}/{job.attempts}")
    except (StorageRefusedError, *TRANSIENT_ERRORS):
        log.warning("job %s: attempt %d's artifacts left in the store", job.id, job.attempts)


def _upload_path(store: Any, stored_name: str) -> Path:
    """The job's upload on this machine: DATA_DIR/uploads, fetched from the store when it is remote."""
    if not stored_name or "/" in stored_name or stored_name in (".", ".."):
        raise InputError("the stored upload name is not a plain file name")
    try:
        return store.fetch(f"{UPLOADS}/{stored_name}")
    except StoredFileMissingError:
        raise VideoNotFoundError("the uploaded video is no longer stored (deleted after its retention period?)") from None


def _heartbeat_every_s(timeout_s: float) -> float:
    return max(0.2, min(timeout_s / 4.0, 5.0))
