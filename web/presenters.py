"""Job records → the API's JSON (also embedded in the pages, so both show the same thing)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from flask import url_for

from shared.db.jobs import estimate_eta_s
from shared.db.models import TERMINAL_STATUSES, Job, JobStatus, utcnow

TERMINAL = tuple(status.value for status in TERMINAL_STATUSES)


def status_value(job: Job) -> str:
    """The job's status as its plain string value."""
    return JobStatus(job.status).value


def job_json(job: Job, *, queue_position: int | None = None, windows: Iterable[Any] = (),
             now: datetime | None = None) -> dict[str, Any]:
    """The full job document of GET /api/v1/jobs/<id>."""
    status = status_value(job)
    doc = job_summary_json(job)
    doc.update({
        "progress": progress_json(job, now=now or utcnow()),
        "queue_position": queue_position if status == "queued" else None,
        "cancel_requested": bool(job.cancel_requested),
        "attempts": job.attempts,
        "params": job.params or {},
        "upload": {"name": job.upload_name, "size": job.upload_size, "sha256": job.upload_sha256},
    })
    if status == "running":
        doc["timeline"] = timeline_json(windows)
    if status == "succeeded":
        doc["result"] = job.result
    if job.error_code:
        doc["error"] = {"code": job.error_code, "message": job.error_message or ""}
    doc["links"] = links_json(job)
    return doc


def job_summary_json(job: Job) -> dict[str, Any]:
    """The short form used in job lists."""
    return {
        "id": str(job.id),
        "status": status_value(job),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "upload_name": job.upload_name,
        "verdict": job.verdict,
        "fake_probability": job.fake_probability,
        "links": links_json(job),
    }


def progress_json(job: Job, *, now: datetime) -> dict[str, Any]:
    """Frames done and expected, the fraction, and the ETA at the speed so far."""
    done, total = job.progress_done or 0, job.progress_total or 0
    fraction = min(done / total, 1.0) if total else (1.0 if status_value(job) == "succeeded" else 0.0)
    return {
        "frames_done": done,
        "frames_total": total,
        "fraction": round(fraction, 4),
        "eta_s": _rounded(estimate_eta_s(job, now=now)),
        "updated_at": iso(job.progress_at),
    }


def timeline_json(windows: Iterable[Any]) -> dict[str, Any]:
    """Windows scored so far, grouped per face track, in frame order."""
    tracks: dict[int, list[dict[str, Any]]] = {}
    for window in windows:
        tracks.setdefault(window.track_id, []).append({
            "start_frame": window.start_frame, "end_frame": window.end_frame,
            "start_s": window.start_s, "end_s": window.end_s, "fake_probability": window.fake_probability,
        })
    return {"tracks": [{"id": track_id, "windows": sorted(items, key=lambda w: w["start_frame"])}
                       for track_id, items in sorted(tracks.items())]}


def artifact_json(job_id: str, artifact: Any) -> dict[str, Any]:
    """One artifact row with the URL it downloads from."""
    return {
        "name": artifact.name,
        "media_type": artifact.media_type,
        "track_id": artifact.track_id,
        "description": artifact.description,
        "url": url_for("api.get_artifact", job_id=job_id, name=artifact.name),
    }


def links_json(job: Job) -> dict[str, str]:
    """Where to poll, cancel, list artifacts and view the job."""
    job_id = str(job.id)
    return {
        "self": url_for("api.get_job", job_id=job_id),
        "cancel": url_for("api.cancel_job", job_id=job_id),
        "artifacts": url_for("api.list_job_artifacts", job_id=job_id),
        "page": url_for("pages.job_page", job_id=job_id),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` (the models hand back aware UTC datetimes)."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def batch_summary_json(batch: Any, progress: Any) -> dict[str, Any]:
    """A batch in lists: name, when, counts per status, and whether every file has ended."""
    batch_id = str(batch.id)
    return {
        "id": batch_id,
        "name": batch.name,
        "created_at": iso(batch.created_at),
        "params": batch.params or {},
        "total": progress.total,
        "done": progress.done,
        "finished": progress.finished,
        "counts": progress.counts,
        "progress": {"frames_done": progress.frames_done, "frames_total": progress.frames_total,
                     "fraction": round(progress.done / progress.total, 4) if progress.total else 0.0},
        "links": {
            "self": url_for("batches.get_batch", batch_id=batch_id),
            "items": url_for("batches.add_item", batch_id=batch_id),
            "results_json": url_for("batches.results_json", batch_id=batch_id),
            "results_csv": url_for("batches.results_csv", batch_id=batch_id),
            "retry": url_for("batches.retry_failed", batch_id=batch_id),
            "cancel": url_for("batches.cancel_batch", batch_id=batch_id),
            "page": url_for("pages.batch_page", batch_id=batch_id),
        },
    }


def batch_json(batch: Any, progress: Any, items: Iterable[Job]) -> dict[str, Any]:
    """The full batch document: the summary and one entry per file, in submission order."""
    doc = batch_summary_json(batch, progress)
    doc["items"] = [batch_item_json(item) for item in items]
    return doc


def batch_item_json(job: Job) -> dict[str, Any]:
    """One file of a batch: its job, status, verdict or error, and how far it got."""
    total = job.progress_total or 0
    return {
        "position": job.batch_position,
        "job_id": str(job.id),
        "file": job.upload_name,
        "status": status_value(job),
        "verdict": job.verdict,
        "fake_probability": job.fake_probability,
        "error": {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None,
        "reused_from": job.reused_from,
        "fraction": round(min((job.progress_done or 0) / total, 1.0), 4) if total else
        (1.0 if status_value(job) == "succeeded" else 0.0),
        "links": {"self": url_for("api.get_job", job_id=str(job.id)),
                  "page": url_for("pages.job_page", job_id=str(job.id))},
    }
