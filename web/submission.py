"""Accepting a job: receive the upload, validate the options, probe the video, record, enqueue.

Anything that fails before the job is queued leaves nothing behind: no file, no row, no message.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from flask import current_app, request
from werkzeug.exceptions import ClientDisconnected

from shared.db.jobs import create_job
from shared.db.webhooks import subscribe as subscribe_webhook
from shared.db.models import Job
from shared.options import CLIENT_OPTIONS, AnalysisOptions, named_checkpoint
from shared.errors import InvalidOptionsError
from web.context import current_owner, current_settings
from web.db import get_session
from web.errors import EmptyUploadError, MissingVideoError, ServiceUnavailableError, UploadTimeoutError
from web.limits import check_storage, check_write_allowed
from web.queue import EnqueueError, choose_lane, enqueue_analysis
from web.security import CSRF_FIELD, require_csrf_token
from web.storage import discard_upload, publish_upload
from web.uploads import VIDEO_FIELD, ReceivedForm, StoredUpload, UploadReceiver
from web.webhooks import WEBHOOK_FIELD, checked_webhook_url

if TYPE_CHECKING:
    from shared.media import VideoInfo

# The engine settings a client may choose per job (device, batch size and the like are the operator's).
API_OPTIONS = CLIENT_OPTIONS


def submit_job(*, from_page_form: bool = False) -> Job:
    """Handle POST /api/v1/jobs (or the upload page's form, which must carry its CSRF token)."""
    check_write_allowed(declared_bytes=request.content_length)
    form = receive_form()
    upload = form.video
    try:
        refuse_ambiguous_parts(form)
        check_storage(upload.size)
        fields = dict(form.fields)
        if from_page_form:
            require_csrf_token(fields.pop(CSRF_FIELD, None))
        webhook_url = checked_webhook_url(fields.pop(WEBHOOK_FIELD, None))
        params = validate_params(fields)
        check_weights_name(params.get("weights"))
        video = _probe(upload)
        upload = upload.stored_as(video.container)
        publish_upload(upload)
        return _record_and_enqueue(upload, params, duration_s=video.duration_s, webhook_url=webhook_url)
    except BaseException:
        discard_upload(upload)
        raise


def refuse_ambiguous_parts(form: ReceivedForm) -> None:
    """A field sent twice, or a file under another name, would be silently dropped: refuse it instead."""
    if form.repeated:
        raise InvalidOptionsError(f"field(s) sent more than once: {', '.join(form.repeated)}")
    if form.extra_files:
        raise InvalidOptionsError(f"unknown file field(s): {', '.join(form.extra_files)}; send only {VIDEO_FIELD!r}")


def validate_params(fields: Mapping[str, str]) -> dict[str, Any]:
    """The client's engine settings, checked by AnalysisOptions and normalised; only those given are kept."""
    unknown = sorted(set(fields) - set(API_OPTIONS))
    if unknown:
        raise InvalidOptionsError(f"unknown field(s): {', '.join(unknown)}; accepted: video, {WEBHOOK_FIELD}, "
                                  f"{', '.join(API_OPTIONS)}")
    given = {name: value for name, value in fields.items() if value.strip() != ""}
    normalised = AnalysisOptions.from_mapping(given).to_dict()
    return {name: normalised[name] for name in given}


def check_weights_name(name: str | None) -> None:
    """Refuse an unknown checkpoint name before queueing, where this process sees WEIGHTS_DIR.

    In the compose deployment only workers mount the weights: there the worker decides, and the job
    fails with the same `weights_not_found`.
    """
    weights_dir = current_settings().weights_dir
    if name is not None and weights_dir.is_dir():
        named_checkpoint(weights_dir, name)


def receive_form() -> ReceivedForm:
    """The request's multipart form with its `video` stored (400 without one, 422 when it is empty)."""
    settings = current_settings()
    receiver = UploadReceiver(uploads_dir=settings.uploads_dir, max_bytes=current_app.config["MAX_UPLOAD_BYTES"])
    try:
        form = receiver.receive(request, max_form_memory_size=current_app.config["MAX_FORM_MEMORY_SIZE"],
                                max_form_parts=current_app.config["MAX_FORM_PARTS"])
    except (TimeoutError, BlockingIOError, ClientDisconnected) as exc:
        if not _read_timed_out(exc):
            raise
        # The partial file is gone already (the receiver removes it on any error).
        raise UploadTimeoutError(f"the upload stalled: nothing arrived for {current_settings().client_read_timeout_s} s "
                                 "(CLIENT_READ_TIMEOUT_S)") from None
    if form.video is None:
        raise MissingVideoError(f"send the video as the multipart/form-data file field {VIDEO_FIELD!r}")
    if form.video.size == 0:
        form.video.delete()
        raise EmptyUploadError("the uploaded video is empty")
    return form


def _read_timed_out(exc: BaseException) -> bool:
    """Whether reading the body hit the server's read timeout: Python's socket timeout (werkzeug's server),
    or EAGAIN from SO_RCVTIMEO (gunicorn's); werkzeug's input stream reports either as ClientDisconnected."""
    error = exc.__context__ if isinstance(exc, ClientDisconnected) else exc
    return isinstance(error, (TimeoutError, BlockingIOError))


def _probe(upload: StoredUpload) -> VideoInfo:
    # Imported here: PyAV is only needed on the upload path.
    from shared.media import probe_video
    from shared.media.limits import VideoLimits

    # Messages name the client's file, never the server's storage path.
    return probe_video(upload.path, limits=VideoLimits.from_settings(current_settings()),
                       name=repr(upload.original_name))


def _record_and_enqueue(upload: StoredUpload, params: dict[str, Any], *, duration_s: float | None,
                        webhook_url: str | None = None) -> Job:
    session = get_session()
    lane = choose_lane(duration_s=duration_s, batch=False)
    job = create_job(session=session, owner=current_owner(), params=params, upload_name=upload.original_name,
                     stored_name=upload.stored_name, upload_size=upload.size, upload_sha256=upload.sha256, lane=lane)
    if webhook_url is not None:
        subscribe_webhook(session=session, url=webhook_url, job_id=job.id)
    session.commit()
    try:
        enqueue_analysis(str(job.id), lane=lane)
    except EnqueueError as exc:
        # Not queued means not accepted: withdraw the record so no job waits forever.
        session.delete(job)
        session.commit()
        raise ServiceUnavailableError(str(exc), code="queue_unavailable") from exc
    return job
