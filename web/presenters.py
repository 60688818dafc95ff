"""Job records → the API's JSON (also embedded in the pages, so both show the same thing)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from flask import url_for

from shared.db.jobs import estimate_eta_s
from shared.db.models import Job, JobStatus, utcnow


def job_json(job: Job, *, queue_position: int | None = None, windows: Iterable[Any] = (),
             now: datetime | None = None) -> dict[str, Any]:
    """The full job document of GET /api/v1/jobs/<id>."""
    status = job.job_status
    doc = job_summary_json(job)
    doc.update({
        "progress": progress_json(job, now=now or utcnow()),
        "queue_position": queue_position if status is JobStatus.QUEUED else None,
        "cancel_requested": bool(job.cancel_requested),
        "attempts": job.attempts,
        "params": job.params or {},
        "upload": {"name": job.upload_name, "size": job.upload_size, "sha256": job.upload_sha256},
    })
    if status is JobStatus.RUNNING:
        doc["timeline"] = timeline_json(windows)
    if status is JobStatus.SUCCEEDED:
        doc["result"] = job.result
    if job.error_code:
        doc["error"] = {"code": job.error_code, "message": job.error_message or ""}
    doc["links"] = links_json(job)
    return doc


def job_summary_json(job: Job) -> dict[str, Any]:
    """The short form used in job lists."""
    return {
        "id": str(job.id),
        "status": job.job_status.value,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "upload_name": job.upload_name,
        "owner": job.owner,
        "verdict": job.verdict,
        "fake_probability": job.fake_probability,
        "links": links_json(job),
    }


def progress_json(job: Job, *, now: datetime) -> dict[str, Any]:
    """Frames done and expected, the fraction, and the ETA at the speed so far."""
    done, total = job.progress_done or 0, job.progress_total or 0
    fraction = min(done / total, 1.0) if total else (1.0 if job.job_status is JobStatus.SUCCEEDED else 0.0)
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
        "status": job.job_status.value,
        "verdict": job.verdict,
        "fake_probability": job.fake_probability,
        "error": {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None,
        "reused_from": job.reused_from,
        "fraction": round(min((job.progress_done or 0) / total, 1.0), 4) if total else
        (1.0 if job.job_status is JobStatus.SUCCEEDED else 0.0),
        "links": {"self": url_for("api.get_job", job_id=str(job.id)),
                  "page": url_for("pages.job_page", job_id=str(job.id))},
    }


def contact_sheet(items: Iterable[dict[str, Any]], thumbnails: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch page's contact sheet: each analysed file (batch item documents) with its most suspicious
    face (`thumbnails`: artifact rows by job id), most suspicious file first; files with no face last."""
    cards = []
    for item in items:
        if item["status"] != JobStatus.SUCCEEDED.value:
            continue
        face = thumbnails.get(item["job_id"])
        cards.append({
            "position": item["position"], "file": item["file"], "verdict": item["verdict"],
            "fake_probability": item["fake_probability"], "page": item["links"]["page"],
            "thumbnail": url_for("api.get_artifact", job_id=item["job_id"], name=face.name) if face else None,
            "track_id": face.track_id if face else None, "description": face.description if face else "",
        })
    return sorted(cards, key=_most_suspicious_first)


def _most_suspicious_first(card: dict[str, Any]) -> tuple[bool, float, int]:
    probability = card["fake_probability"]
    return probability is None, -(probability or 0.0), card["position"] or 0


# The job page's words for a status: a status says where the job is, never what it found (the verdict
# has its own block), so "succeeded" reads as the analysis having finished.
STATUS_LABELS = {"queued": "queued", "running": "analysing", "succeeded": "analysis finished",
                 "failed": "analysis failed", "cancelled": "cancelled"}
# Gaps shorter than this between face tracks are detection flicker, not worth a label.
MIN_GAP_S = 0.5
PREVIEW_ARTIFACT = "preview.mp4"
FAILURE_HINTS = {
    "no_decodable_frames": "The file could not be decoded: check that it plays, or convert it to MP4 (H.264).",
    "not_a_video": "Upload a video file (mp4, mov, mkv, webm, ...).",
    "unsupported_format": "Convert the video to MP4 (H.264) and upload it again.",
    "weights_not_found": "The server has no such checkpoint: choose an installed one, or ask the operator.",
    "checkpoint_mismatch": "The checkpoint does not fit the model: choose another one.",
    "worker_lost": "The worker stopped several times while running this job: upload the video again; "
                   "if it happens again, tell the operator (a long video may run out of memory).",
    "internal_error": "Upload the video again; if it fails again, tell the operator (see the worker log).",
}
DEFAULT_FAILURE_HINT = "Fix what the message says, then upload the video again."
TIMING_LABELS = {"probe_s": "reading the file's header", "load_s": "loading the model (0 when already loaded)",
                 "decode_s": "decoding", "detect_s": "finding faces", "crop_s": "cropping faces",
                 "embed_s": "CNN features", "classify_s": "scoring windows", "heatmaps_s": "heatmaps",
                 "preview_s": "preview video", "hash_s": "hashing the file", "total_s": "total"}


def job_page_view(doc: dict[str, Any], artifacts: Iterable[Any]) -> dict[str, Any]:
    """What the job page shows beyond the API document: words for the status, how far the job got,
    the preview, each track with its pictures, the gaps in the timeline, and this job's timings."""
    result = doc.get("result") or {}
    rows = list(artifacts)
    return {
        "status_label": STATUS_LABELS.get(doc["status"], doc["status"]),
        "how_far": how_far(doc),
        "failure_hint": FAILURE_HINTS.get((doc.get("error") or {}).get("code"), DEFAULT_FAILURE_HINT),
        "preview_url": next((url_for("api.get_artifact", job_id=doc["id"], name=a.name) for a in rows
                             if a.name == PREVIEW_ARTIFACT), None),
        "tracks": track_cards(doc["id"], result, rows),
        "other_pictures": [artifact_json(doc["id"], a) for a in rows
                           if a.track_id is None and a.media_type.startswith("image/")],
        "gaps": timeline_gaps(result),
        "timings": job_timings(result),
    }


def how_far(doc: dict[str, Any]) -> str:
    """`120 of 600 frames (20%)`: how much of the video was analysed."""
    progress = doc.get("progress") or {}
    done, total = progress.get("frames_done") or 0, progress.get("frames_total") or 0
    if not total:
        return "before any frame was analysed" if not done else f"after {done} frames"
    return f"after {done} of {total} frames ({round(100 * min(done / total, 1.0))}%)"


def track_cards(job_id: str, result: dict[str, Any], artifacts: Iterable[Any]) -> list[dict[str, Any]]:
    """Each face track of the result with its span in seconds and its own pictures (heatmaps, faces)."""
    pictures: dict[int, list[dict[str, Any]]] = {}
    for artifact in artifacts:
        if artifact.track_id is not None and artifact.media_type.startswith("image/"):
            pictures.setdefault(artifact.track_id, []).append(artifact_json(job_id, artifact))
    cards = []
    for track in result.get("tracks") or []:
        start, end = _track_span_s(track, fps=(result.get("video") or {}).get("fps"))
        cards.append({"id": track["id"], "verdict": track.get("verdict"),
                      "fake_probability": track.get("fake_probability"),
                      "start_s": start, "end_s": end, "windows": len(track.get("windows") or []),
                      "pictures": pictures.get(track["id"], [])})
    return cards


def timeline_gaps(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Stretches of the video where no face track was on screen, with the words that explain them."""
    video = result.get("video") or {}
    duration = video.get("duration_s") or 0.0
    spans = sorted(_track_span_s(t, fps=video.get("fps")) for t in result.get("tracks") or [])
    gaps, covered_to = [], 0.0
    for start, end in [*spans, (duration, duration)]:
        if start - covered_to >= MIN_GAP_S:
            gaps.append({"start_s": round(covered_to, 1), "end_s": round(start, 1),
                         "text": f"no face found from {covered_to:.1f} s to {start:.1f} s"})
        covered_to = max(covered_to, end)
    return gaps


def _track_span_s(track: dict[str, Any], *, fps: float | None) -> tuple[float, float]:
    """When the track was on screen: its first and last sampled boxes, else its windows, else its frames."""
    boxes, windows = track.get("boxes") or [], track.get("windows") or []
    if boxes:
        return boxes[0]["t"], boxes[-1]["t"]
    if windows:
        return min(w["start_s"] for w in windows), max(w["end_s"] for w in windows)
    rate = fps or 1.0
    return track.get("first_frame", 0) / rate, track.get("last_frame", 0) / rate


def job_timings(result: dict[str, Any]) -> dict[str, Any]:
    """This job's own timings in words; a reused result's timings are another job's, so they are not shown."""
    reused = result.get("reused_from")
    if reused:
        return {"reused_from": reused.get("job_id"), "rows": []}
    timings = result.get("timings") or {}
    return {"reused_from": None, "rows": [(TIMING_LABELS.get(name, name), value) for name, value in timings.items()]}
