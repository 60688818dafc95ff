"""Server-rendered pages: upload, job (progress, then the result; delete once ended), jobs list, batches,
and the API reference (Swagger UI over the OpenAPI document).

The pages read the same JSON the API serves, so a job submitted through the API shows the same way.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, render_template, request, send_from_directory, url_for

from shared.db import jobs as job_store
from shared.db import batches as batch_store
from shared.options import installed_checkpoints
from web import batches as batch_api
from web.api import fetch_job_page, load_job, partial_windows, remove_job
from web.context import current_settings
from web.db import get_session
from web.presenters import job_json, job_page_view, job_summary_json
from web.schemas import JOB_STATUSES, OPTION_PROPERTIES
from web.security import CONTENT_SECURITY_POLICY, CSRF_FIELD, require_csrf_token
from web.submission import submit_job

bp = Blueprint("pages", __name__)
PAGE_SIZE = 25
# The job page plays the job's preview video (an artifact, same origin); no other page loads media.
JOB_PAGE_POLICY = f"{CONTENT_SECURITY_POLICY}; media-src 'self'"
# Swagger UI's style sheet draws its icons as data: URIs; nothing else is loosened (no inline script or style).
API_DOCS_POLICY = CONTENT_SECURITY_POLICY.replace("img-src 'self'", "img-src 'self' data:")
# Only the Swagger UI files the API reference page loads are served from the package's folder.
API_DOCS_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})


@bp.get("/")
def upload_page() -> str:
    """The upload form (drag and drop, progress bar, optional engine settings)."""
    return render_template("upload.html", options=OPTION_PROPERTIES, checkpoints=_checkpoints())


def _checkpoints() -> list[str] | None:
    """The checkpoints the settings offer by name; None where this web host has no weights folder."""
    return installed_checkpoints(current_settings().weights_dir)


@bp.post("/")
def upload_form() -> Response:
    """The form's plain POST, for browsers without JavaScript: submit, then go to the job page."""
    job = submit_job(from_page_form=True)
    return redirect(url_for("pages.job_page", job_id=str(job.id)), code=303)


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> Response:
    """One job: progress while it waits or runs; once done, the verdict, the video with the faces
    boxed, the timeline and each track's pictures."""
    session = get_session()
    job = load_job(job_id)
    doc = job_json(job, queue_position=job_store.queue_position(session=session, job=job),
                   windows=partial_windows(job))
    artifacts = job_store.list_artifacts(session=session, job_id=job.id) if doc["status"] == "succeeded" else []
    html = render_template("job.html", job=doc, artifacts=artifacts, view=job_page_view(doc, artifacts))
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": JOB_PAGE_POLICY})


@bp.post("/jobs/<job_id>/delete")
def delete_job(job_id: str) -> Response:
    """The job page's delete button, a plain form POST: delete the ended job, then show the list."""
    require_csrf_token(request.form.get(CSRF_FIELD))
    remove_job(load_job(job_id))
    return redirect(url_for("pages.jobs_page"), code=303)


@bp.get("/jobs")
def jobs_page() -> str:
    """The owner's jobs, newest first, with a status filter and a next-page link."""
    jobs, next_cursor = fetch_job_page(status=request.args.get("status"), limit=request.args.get("limit"),
                                       cursor=request.args.get("cursor"), default_limit=PAGE_SIZE)
    return render_template("jobs.html", jobs=[job_summary_json(job) for job in jobs], next_cursor=next_cursor,
                           status=request.args.get("status") or "", statuses=JOB_STATUSES,
                           show_owner=batch_api.current_owner() is None)  # an admin sees every owner's: say whose


@bp.get("/batches")
def batches_page() -> str:
    """The owner's batches, and a form that uploads many files as one batch."""
    session = get_session()
    found = batch_store.list_batches(session=session, owner=batch_api.current_owner())
    progress = batch_store.batches_progress(session=session, batch_ids=[b.id for b in found])
    summaries = [batch_api.batch_summary_json(b, progress[b.id]) for b in found]
    return render_template("batches.html", batches=summaries, options=OPTION_PROPERTIES, checkpoints=_checkpoints())


@bp.get("/batches/<batch_id>")
def batch_page(batch_id: str) -> str:
    """One batch: per-file status and progress (refreshing while it runs), the contact sheet of the most
    suspicious faces, the report, retry and cancel."""
    batch = batch_api.load_batch(batch_id)
    document = batch_api.batch_document(batch)
    return render_template("batch.html", batch=document, sheet=batch_api.batch_contact_sheet(batch, document))


@bp.get("/api-docs")
def api_docs_page() -> Response:
    """The interactive API reference: Swagger UI over the app's own OpenAPI document."""
    html = render_template("api_docs.html", spec_url=url_for("api.openapi_document"))
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": API_DOCS_POLICY})


@bp.get("/api-docs/assets/<name>")
def api_docs_asset(name: str) -> Response:
    """Swagger UI's script and style sheet, from the installed swagger-ui-bundle-v2 package (no CDN)."""
    from swagger_ui_bundle import swagger_ui_path

    if name not in API_DOCS_ASSETS:
        abort(404)
    return send_from_directory(swagger_ui_path, name)


@bp.post("/batches/<batch_id>/<action>")
def batch_action(batch_id: str, action: str) -> Response:
    """The batch page's buttons, plain form POSTs: retry failed files, cancel the rest, delete."""
    require_csrf_token(request.form.get(CSRF_FIELD))
    batch = batch_api.load_batch(batch_id)
    if action == "retry":
        batch_api.retry_failed(batch_id)
    elif action == "cancel":
        batch_api.cancel_batch(batch_id)
    elif action == "delete":
        batch_api.delete_batch(batch_id)
        return redirect(url_for("pages.batches_page"), code=303)
    else:
        abort(404)
    return redirect(url_for("pages.batch_page", batch_id=str(batch.id)), code=303)
