"""The batch API under /api/v1/batches: many videos with the same settings, one report.

A batch is created empty (JSON: name and engine options) or from files already on the server (JSON:
`import`, under the operator's BATCH_IMPORT_ROOT); uploads are added one file per request
(`POST .../items`), so one large or broken file never costs the others. A file the service refuses on
probing becomes a failed item and the batch goes on. Failed items can be retried while their file is
stored; the report is one row per file, as CSV or JSON.
"""
from __future__ import annotations

import io
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from shared.batch_report import report_json, report_row, write_csv
from shared.db import batches as batch_store
from shared.db import retention
from shared.db.webhooks import subscribe as subscribe_webhook
from shared.db.models import Batch, Job, JobStatus
from shared.errors import InputError, InvalidOptionsError
from shared.options import INT_RANGES
from shared.media import VIDEO_FILE_EXTENSIONS
from shared.storage import UPLOADS
from web.context import current_owner, current_settings
from web.db import get_session
from web.errors import ApiError, ServiceUnavailableError
from web.imports import candidates_from_folder, candidates_from_paths, copy_into_uploads, import_root
from web.limits import check_rate, check_storage, check_write_allowed, reserve
from web.openapi import Param, operation
from web.presenters import batch_json, batch_summary_json, contact_sheet, job_json  # noqa: F401 (pages use the summary)
from web.queue import EnqueueError, choose_lane, enqueue_analysis
from web.schemas import BATCH_CREATE_BODY, BATCH_ITEM_BODY
from web.submission import check_weights_name, refuse_ambiguous_parts, receive_form, validate_params
from web.storage import current_store, discard_upload, publish_upload
from web.uploads import StoredUpload
from web.webhooks import WEBHOOK_FIELD, announce_cancelled, checked_webhook_url

bp = Blueprint("batches", __name__, url_prefix="/api/v1/batches")
PATH_FIELD = "path"
_BATCH_ID = Param("batch_id", "The batch's id (a UUID).", {"type": "string", "format": "uuid"}, location="path")
_CREATE_FIELDS = {"name", "options", "import", WEBHOOK_FIELD}


class BatchNotFoundError(ApiError):
    status = 404
    code = "batch_not_found"


@bp.post("")
@operation(responses={201: "Batch", 400: "Error", 403: "Error", 413: "Error", 422: "Error", 429: "Error",
                      503: "Error"}, body=BATCH_CREATE_BODY, tag="batches")
def create_batch() -> tuple[Response, int, dict[str, str]]:
    """Create a batch: empty (add files with POST .../items), or importing files already on the server.

    `import` is `{"folder": "sub/dir", "recursive": false}` or `{"paths": ["a.mp4", ...]}`, relative to
    the operator's BATCH_IMPORT_ROOT (403 `import_disabled` when none is set).
    """
    check_rate()
    body = _json_body()
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidOptionsError("options must be an object of engine settings")
    params = validate_params({name: _as_text(name, value) for name, value in options.items()})
    check_weights_name(params.get("weights"))
    name = body.get("name", "")
    if not isinstance(name, str):  # null, [] or 0 too: the document says a string
        raise InvalidOptionsError("name must be a string")
    webhook_url = checked_webhook_url(body.get(WEBHOOK_FIELD))
    candidates = _import_candidates(body["import"]) if body.get("import") is not None else []
    if candidates:  # all or nothing: refused before the batch exists; reserved while the import runs
        reserve(owner=current_owner(), jobs=len(candidates),
                size=sum(c.path.stat().st_size for c in candidates if c.path is not None))
    session = get_session()
    # Printable characters only, as for item labels: PostgreSQL cannot store NUL in text (that was a 500)
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    batch = batch_store.create_batch(session=session, owner=current_owner(), name=name, params=params)
    if webhook_url is not None:  # one call when every item ended (shared.db.webhooks.arm_batch)
        subscribe_webhook(session=session, url=webhook_url, batch_id=batch.id)
    session.commit()
    for candidate in candidates:
        _import_one(batch, candidate)
    return jsonify(_document(batch)), 201, {"Location": url_for("batches.get_batch", batch_id=str(batch.id))}


@bp.get("")
@operation(responses={200: "BatchList", 400: "Error"}, tag="batches", params=(
    Param("limit", "How many, newest first.", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),))
def list_batches() -> Response:
    """The caller's batches, newest first, with their progress."""
    raw = request.args.get("limit", "50")  # `limit=` is a 400, as for jobs
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= batch_store.MAX_BATCHES_LISTED:
        raise ApiError(f"limit must be an integer from 1 to {batch_store.MAX_BATCHES_LISTED}; got {raw!r}",
                       code="invalid_limit")
    session = get_session()
    found = batch_store.list_batches(session=session, owner=current_owner(), limit=int(raw))
    progress = batch_store.batches_progress(session=session, batch_ids=[b.id for b in found])
    return jsonify(batches=[batch_summary_json(b, progress[b.id]) for b in found])


@bp.get("/<batch_id>")
@operation(responses={200: "Batch", 404: "Error"}, params=(_BATCH_ID,), tag="batches")
def get_batch(batch_id: str) -> Response:
    """A batch: counts per status, progress, and each file's status, verdict or error."""
    return jsonify(_document(load_batch(batch_id)))


@bp.post("/<batch_id>/items")
@operation(responses={201: "Job", 400: "Error", 404: "Error", 408: "Error", 409: "Error", 413: "Error",
                      422: "Error", 429: "Error", 503: "Error"}, params=(_BATCH_ID,), body=BATCH_ITEM_BODY,
           tag="batches")
def add_item(batch_id: str) -> tuple[Response, int]:
    """Add one uploaded video to the batch; it is analysed with the batch's settings.

    A file the service cannot analyse (not a video, unsupported format) is recorded as a failed
    item with its error, and still answers 201: the batch goes on without it.
    """
    batch = load_batch(batch_id)
    check_write_allowed(declared_bytes=request.content_length, owner=batch.owner)
    form = receive_form()
    upload = form.video
    try:
        refuse_ambiguous_parts(form)
        check_storage(upload.size, owner=batch.owner)
        fields = dict(form.fields)
        label = _label(fields.pop(PATH_FIELD, None), upload.original_name)
        if fields:
            raise InvalidOptionsError(f"unknown field(s): {', '.join(sorted(fields))}; a batch item takes "
                                      f"video and {PATH_FIELD}; settings belong to the batch")
        job = _add_stored(batch, upload, label)
    except BaseException:
        discard_upload(upload)
        raise
    return jsonify(job_json(job)), 201


@bp.get("/<batch_id>/results.json")
@operation(responses={200: "BatchReport", 404: "Error"}, params=(_BATCH_ID,), tag="batches")
def results_json(batch_id: str) -> Response:
    """The report: one row per file (verdict, probability, faces, reasons, error), and a summary."""
    return jsonify(report_json(_rows(load_batch(batch_id))))


@bp.get("/<batch_id>/results.csv")
@operation(responses={200: None, 404: "Error"}, params=(_BATCH_ID,), media_type="text/csv", tag="batches")
def results_csv(batch_id: str) -> Response:
    """The same report as CSV (cells that a spreadsheet would run as formulas are quoted)."""
    batch = load_batch(batch_id)
    out = io.StringIO()
    write_csv(_rows(batch), out)
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="batch-{batch.id}.csv"'})


@bp.post("/<batch_id>/retry")
@operation(responses={202: "Batch", 404: "Error", 503: "Error"}, params=(_BATCH_ID,), tag="batches")
def retry_failed(batch_id: str) -> tuple[Response, int]:
    """Queue the failed items again (those whose file is still stored); the others stay failed."""
    batch = load_batch(batch_id)
    store = current_store()
    session = get_session()
    retried, _ = batch_store.retry_failed_items(session=session, batch=batch,
                                                upload_exists=lambda name: store.exists(f"{UPLOADS}/{name}"))
    session.commit()
    try:
        for job in retried:
            enqueue_analysis(str(job.id), lane=job.lane)
    except EnqueueError:
        # Not withdrawn, unlike a new upload: each replaced a failed item, and withdrawing it would lose the
        # file from the batch. Queued and unsent, they are sent by the workers' reaper once the broker answers.
        pass
    return jsonify(_document(batch)), 202


@bp.post("/<batch_id>/cancel")
@operation(responses={202: "Batch", 404: "Error"}, params=(_BATCH_ID,), tag="batches")
def cancel_batch(batch_id: str) -> tuple[Response, int]:
    """Cancel every queued item and stop every running one (between batches of frames)."""
    batch = load_batch(batch_id)
    session = get_session()
    batch_store.cancel_batch(session=session, batch=batch)
    session.commit()
    cancelled = [str(item.id) for item in batch_store.batch_items(session=session, batch_id=batch.id)
                 if item.status == JobStatus.CANCELLED.value]
    announce_cancelled(job_ids=cancelled, batch_id=batch.id)  # those cancelled while queued ended here
    return jsonify(_document(batch)), 202


@bp.delete("/<batch_id>")
@operation(responses={200: "Batch", 404: "Error", 409: "Error", 503: "Error"}, params=(_BATCH_ID,), tag="batches")
def delete_batch(batch_id: str) -> Response:
    """Delete an ended batch with every item's upload, result and artifacts; 409 while items are active."""
    batch = load_batch(batch_id)
    document = _document(batch)
    if not all(JobStatus(item["status"]).is_terminal for item in document["items"]):
        raise ApiError(f"batch {batch_id} still has queued or running items: cancel it first, then delete it",
                       code="batch_active", status=409)
    remove_batch(batch)
    return jsonify(document)


def remove_batch(batch: Batch) -> None:
    """Each ended item, its files before its rows, then the batch row. A store outage stops it with the
    items not yet reached kept (503); deleting again finishes it."""
    session, owner = get_session(), current_owner()
    for item in batch_store.batch_items(session=session, batch_id=batch.id):
        retention.delete_job_with_files(session=session, store=current_store(), owner=owner, job_id=str(item.id))
    batch_store.delete_batch_row(session=session, batch=batch)
    session.commit()


def load_batch(batch_id: str) -> Batch:
    """The owner's batch with this canonical id, or 404 (as for jobs: one spelling, one resource)."""
    try:
        canonical = str(uuid.UUID(batch_id))
    except ValueError:
        raise BatchNotFoundError(f"no batch with id {batch_id!r}") from None
    batch = None
    if canonical == batch_id:
        batch = batch_store.get_batch(session=get_session(), owner=current_owner(), batch_id=canonical)
    if batch is None:
        raise BatchNotFoundError(f"no batch with id {batch_id!r}")
    return batch


def batch_document(batch: Batch) -> dict[str, Any]:
    """The batch JSON (also what the batch page renders)."""
    return _document(batch)


def batch_contact_sheet(batch: Batch, document: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch page's contact sheet: each analysed file's most suspicious face, one query for all files."""
    thumbnails = batch_store.top_face_thumbnails(session=get_session(), batch_id=batch.id)
    return contact_sheet(document["items"], thumbnails)


def _document(batch: Batch) -> dict[str, Any]:
    session = get_session()
    items = batch_store.batch_items(session=session, batch_id=batch.id)
    return batch_json(batch, batch_store.batch_progress(session=session, batch_id=batch.id), items)


def _rows(batch: Batch) -> list[dict[str, Any]]:
    items = batch_store.batch_items(session=get_session(), batch_id=batch.id)
    return [report_row(position=item.batch_position or 0, file=item.upload_name, sha256=item.upload_sha256,
                       status=item.status, result=item.result if item.status == "succeeded" else None,
                       error_code=item.error_code, error_message=item.error_message, job_id=str(item.id),
                       reused_from=item.reused_from) for item in items]


def _add_stored(batch: Batch, upload: StoredUpload, label: str) -> Job:
    """Probe the stored file: a refused one becomes a failed item, a video a queued one."""
    from shared.media import probe_video  # PyAV only on the upload path
    from shared.media.limits import VideoLimits

    session = get_session()
    try:
        # Messages name the file as the client knows it, never the server's storage path.
        info = probe_video(upload.path, limits=VideoLimits.from_settings(current_settings()), name=repr(label))
    except InputError as exc:
        discard_upload(upload)
        job = batch_store.add_failed_item(session=session, batch=batch, upload_name=label, upload_size=upload.size,
                                          upload_sha256=upload.sha256, code=exc.code, message=exc.message)
        session.commit()
        return job
    upload = upload.stored_as(info.container)
    try:
        publish_upload(upload)
        job = batch_store.add_item(session=session, batch=batch, upload_name=label, stored_name=upload.stored_name,
                                   upload_size=upload.size, upload_sha256=upload.sha256,
                                   lane=choose_lane(duration_s=info.duration_s, batch=True))
        session.commit()
        _send(job)
    except BaseException:
        discard_upload(upload)  # under its stored name: the caller only knows the name it arrived under
        raise
    return job


def _send(job: Job) -> None:
    """Enqueue a committed item; if the broker refuses, withdraw it (not queued means not accepted)."""
    try:
        enqueue_analysis(str(job.id), lane=job.lane)
    except EnqueueError as exc:
        session = get_session()
        session.delete(job)
        session.commit()
        raise ServiceUnavailableError(str(exc), code="queue_unavailable") from exc


def _import_candidates(spec: Any) -> list:
    root = import_root(current_settings().batch_import_root)
    if not isinstance(spec, dict) or set(spec) - {"folder", "recursive", "paths"} or \
            ("folder" in spec) == ("paths" in spec):
        raise InvalidOptionsError('import is {"folder": "dir", "recursive": false} or {"paths": ["a.mp4", ...]}')
    if "paths" in spec:
        if not isinstance(spec["paths"], list):
            raise InvalidOptionsError("import.paths must be a list of paths")
        return candidates_from_paths(root, spec["paths"])
    recursive = spec.get("recursive", False)
    if not isinstance(recursive, bool):
        raise InvalidOptionsError("import.recursive must be true or false")
    return candidates_from_folder(root, spec["folder"], recursive=recursive, extensions=VIDEO_FILE_EXTENSIONS)


def _import_one(batch: Batch, candidate: Any) -> None:
    session = get_session()
    if candidate.path is None:
        batch_store.add_failed_item(session=session, batch=batch, upload_name=candidate.label, upload_size=0,
                                    upload_sha256="", code="file_not_found",
                                    message=f"{candidate.label!r} is not a file in the import folder")
        session.commit()
        return
    upload = copy_into_uploads(candidate.path, uploads_dir=current_settings().uploads_dir, label=candidate.label)
    try:
        _add_stored(batch, upload, candidate.label)
    except BaseException:
        discard_upload(upload)
        raise


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError("send a JSON object: {\"name\": ..., \"options\": {...}, \"import\": {...}}",
                       code="invalid_json", status=400)
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise InvalidOptionsError(f"unknown field(s): {', '.join(unknown)}; accepted: {', '.join(sorted(_CREATE_FIELDS))}")
    return body


def _as_text(name: str, value: Any) -> str:
    """A JSON option value as the form's text, so both go through the same validation.

    It must have the JSON type the API document declares (web.schemas): an integer for a count, a
    non-empty string otherwise. null, "" and "8" for a count are refused, not read as "the default".
    """
    if name in INT_RANGES and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 8.0 is the integer 8 (JSON Schema agrees)
    expected, kind = (int, "an integer") if name in INT_RANGES else (str, "a non-empty string")
    if isinstance(value, bool) or not isinstance(value, expected) or value == "":
        raise InvalidOptionsError(f"option {name} must be {kind}; got {value!r}")
    return str(value)


def _label(raw: str | None, fallback: str) -> str:
    """The file's name as the user sees it in the batch (a relative path), printable and bounded."""
    text = "".join(ch for ch in (raw or "") if ch.isprintable()).strip().replace("\\", "/").lstrip("/")
    return (text or fallback)[:500]
