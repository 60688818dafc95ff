"""The REST API under /api/v1: submit, read, list, cancel and delete jobs; fetch artifacts; the OpenAPI document."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for

from shared.db import jobs as job_store
from shared.db import retention
from shared.db.models import Job, JobStatus
from web.context import current_owner
from web.db import get_session
from web.errors import ApiError, ArtifactNotFoundError, JobNotFoundError
from web.openapi import Param, build_document, operation
from web.presenters import artifact_json, job_json, job_summary_json
from web.schemas import JOB_UPLOAD_BODY, JOB_STATUSES
from web.storage import artifact_file, current_store
from web.webhooks import announce_cancelled
from web.submission import submit_job

bp = Blueprint("api", __name__, url_prefix="/api/v1")
RETRY_AFTER_S = 2
MAX_PAGE = 200
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_JOB_ID = Param("job_id", "The job's id (a UUID).", {"type": "string", "format": "uuid"}, location="path")


@bp.post("/jobs")
@operation(responses={202: "Job", 400: "Error", 408: "Error", 413: "Error", 415: "Error", 422: "Error",
                      429: "Error", 503: "Error"}, body=JOB_UPLOAD_BODY)
def create_job() -> tuple[Response, int, dict[str, str]]:
    """Submit a video for analysis.

    The upload streams to disk and is probed before anything is queued; poll the Location.
    """
    job = submit_job()
    location = url_for("api.get_job", job_id=str(job.id))
    return jsonify(job_json(job, queue_position=job_store.queue_position(session=get_session(), job=job))), 202, {
        "Location": location, "Retry-After": str(RETRY_AFTER_S)}


@bp.get("/jobs")
@operation(responses={200: "JobList", 400: "Error"}, params=(
    Param("status", "Only jobs in this state.", {"enum": JOB_STATUSES}),
    Param("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}),
    Param("cursor", "The next_cursor of the previous page."),
))
def list_jobs() -> Response:
    """List the caller's jobs, newest first, one page at a time."""
    jobs, next_cursor = fetch_job_page(status=request.args.get("status"), limit=request.args.get("limit"),
                                       cursor=request.args.get("cursor"))
    return jsonify(jobs=[job_summary_json(job) for job in jobs], next_cursor=next_cursor)


@bp.get("/jobs/<job_id>")
@operation(responses={200: "Job", 404: "Error"}, params=(_JOB_ID,))
def get_job(job_id: str) -> Response:
    """A job's status, progress with ETA and queue position, partial timeline, result or error."""
    job = load_job(job_id)
    return jsonify(job_json(job, queue_position=job_store.queue_position(session=get_session(), job=job),
                            windows=partial_windows(job)))


@bp.post("/jobs/<job_id>/cancel")
@operation(responses={200: "Job", 202: "Job", 404: "Error"}, params=(_JOB_ID,))
def cancel_job(job_id: str) -> tuple[Response, int]:
    """Ask for a job to stop (cooperative: the worker stops between batches).

    A finished job is returned unchanged with 200.
    """
    session = get_session()
    job = load_job(job_id)
    if job.job_status.is_terminal:
        return jsonify(job_json(job)), 200
    job_store.request_cancel(session=session, owner=current_owner(), job_id=job.id)
    session.commit()
    job = load_job(job_id)
    if job.job_status.is_terminal:  # cancelled while queued: no worker will announce its end
        announce_cancelled(job_ids=[str(job.id)], batch_id=job.batch_id)
    return jsonify(job_json(job, queue_position=job_store.queue_position(session=session, job=job))), 202


@bp.delete("/jobs/<job_id>")
@operation(responses={200: "Job", 404: "Error", 409: "Error", 503: "Error"}, params=(_JOB_ID,))
def delete_job(job_id: str) -> Response:
    """Delete an ended job with its upload, result and artifacts; returns the job as it was.

    A queued or running job answers 409 `job_active`: cancel it first (a queued job is cancelled at
    once, a running one between batches), then delete it.
    """
    job = load_job(job_id)
    document = job_json(job)
    remove_job(job)
    return jsonify(document)


def remove_job(job: Job) -> None:
    """The ended job's files (the upload only if no other job shares it), then its rows; 409 while
    the job is queued or running, 503 `storage_unavailable` (the job kept whole) while the store is away."""
    session, job_id = get_session(), str(job.id)
    if not job.job_status.is_terminal:
        raise ApiError(f"job {job_id} is {job.job_status.value}: cancel it first, then delete it",
                       code="job_active", status=409)
    if not retention.delete_job_with_files(session=session, store=current_store(), owner=current_owner(),
                                           job_id=job_id):
        raise JobNotFoundError(f"no job with id {job_id!r}")  # deleted by a concurrent request meanwhile


@bp.get("/jobs/<job_id>/artifacts")
@operation(responses={200: "ArtifactList", 404: "Error"}, params=(_JOB_ID,))
def list_job_artifacts(job_id: str) -> Response:
    """The pictures a finished analysis produced (heatmaps, thumbnails)."""
    job = load_job(job_id)
    artifacts = job_store.list_artifacts(session=get_session(), job_id=job.id)
    return jsonify(artifacts=[artifact_json(str(job.id), a) for a in artifacts])


@bp.get("/jobs/<job_id>/artifacts/<name>")
@operation(responses={200: None, 404: "Error"}, media_type="image/png", params=(
    _JOB_ID, Param("name", "The artifact's file name.", location="path")))
def get_artifact(job_id: str, name: str) -> Response:
    """Download one artifact of a job (Range requests get 206, so the preview video can seek)."""
    job = load_job(job_id)
    if not _ARTIFACT_NAME.match(name):
        raise ArtifactNotFoundError(f"no artifact named {name!r}")
    artifact = job_store.get_artifact(session=get_session(), owner=current_owner(), job_id=job.id, name=name)
    for _ in range(2):  # a fetched copy another request evicts before it is opened here is fetched again
        path = _artifact_path(artifact.path if artifact else None)
        if path is None:
            break
        try:
            # conditional: Range → 206 / 416 and ETag → 304, which a <video> needs to seek; cached privately
            # only (web.security). send_file opens the file now: once open, an eviction cannot hurt it.
            return send_file(path, mimetype=artifact.media_type, conditional=True)
        except FileNotFoundError:
            continue
    raise ArtifactNotFoundError(f"job {job_id} has no artifact named {name!r}")


@bp.get("/openapi.json")
@operation(responses={200: "OpenAPI"}, tag="meta")
def openapi_document() -> Response:
    """This API's OpenAPI 3.1 document, generated from the routes."""
    return jsonify(build_document(current_app))


def load_job(job_id: str) -> Job:
    """The owner's job with this id, or a 404 (also for ids that are not UUIDs in canonical form).

    Only the lower-case hyphenated spelling is an id: one resource, one URL (uuid.UUID would also take
    upper case, braces, a `urn:uuid:` prefix or no hyphens).
    """
    try:
        canonical = str(uuid.UUID(job_id))
    except ValueError:
        raise JobNotFoundError(f"no job with id {job_id!r}") from None
    if canonical != job_id:
        raise JobNotFoundError(f"no job with id {job_id!r}")
    job = job_store.get_job(session=get_session(), owner=current_owner(), job_id=canonical)
    if job is None:
        raise JobNotFoundError(f"no job with id {job_id!r}")
    return job


def partial_windows(job: Job) -> list:
    """The windows scored so far, read only while the job runs (a finished job has its result)."""
    if job.job_status is not JobStatus.RUNNING:
        return []
    return job_store.job_windows(session=get_session(), job_id=job.id)


def fetch_job_page(*, status: str | None, limit: str | None, cursor: str | None,
                   default_limit: int = 50) -> tuple[list[Job], str | None]:
    """One page of the owner's jobs from raw query values; bad values are a 400."""
    try:
        return job_store.list_jobs(session=get_session(), owner=current_owner(), status=_status_filter(status),
                                   limit=_page_size(limit, default=default_limit), cursor=cursor or None)
    except job_store.InvalidCursorError as exc:
        raise ApiError(str(exc) or "invalid cursor", code="invalid_cursor") from exc


def _status_filter(raw: str | None) -> JobStatus | None:
    if raw is None:  # `status=` with no value is a 400 like any other value not in the enum
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        raise ApiError(f"status must be one of {', '.join(JOB_STATUSES)}; got {raw!r}", code="invalid_status") from None


def _page_size(raw: str | None, *, default: int) -> int:
    if raw is None:  # `limit=` with no value is a 400: the document says an integer
        return default
    # ASCII digits only, and few: int() refuses "²" and 5,000 digits with a ValueError (a 500) and reads "٣" as 3
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(f"limit must be an integer from 1 to {MAX_PAGE}; got {raw!r}", code="invalid_limit")
    return int(raw)


def _artifact_path(relative: str | None) -> Path | None:
    """The artifact's file on this machine (fetched from the store when remote), if it still exists."""
    return artifact_file(relative) if relative else None
