"""The one place errors become HTTP responses.

Everything under /api/ and the health checks answers `{"error": {"code", "message"}}` for every
status; HTML pages render an error page instead.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError

from shared.storage import StorageUnavailableError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from shared.errors import EngineError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "upload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
# Engine error codes whose HTTP status is not 422 (the default for an unusable input). A storage
# refusal (shared.storage.StorageRefusedError) is the server's misconfiguration, not the client's.
ENGINE_STATUS = {"not_a_video": 415, "unsupported_format": 415, "storage_refused": 500}
# The database is unreachable or refused the work (DB-API OperationalError: lost connection, refused
# connection, server shutting down; InterfaceError: a closed connection; or no pooled connection in
# time): retryable, so 503 with Retry-After rather than 500.
DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)
# A PostgreSQL restart takes a few seconds; clients should not poll a down database faster than this.
DATABASE_RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error the web layer raises on purpose, with a status, a stable code and a message."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.headers = headers or {}  # e.g. Retry-After on 429


class JobNotFoundError(ApiError):
    status = 404
    code = "job_not_found"


class ArtifactNotFoundError(ApiError):
    status = 404
    code = "artifact_not_found"


class ServiceUnavailableError(ApiError):
    status = 503
    code = "unavailable"


class MissingVideoError(ApiError):
    """A job or batch item sent without its `video` file field."""

    status = 400
    code = "missing_video"


class EmptyUploadError(ApiError):
    status = 422
    code = "empty_upload"


class UploadTimeoutError(ApiError):
    """The client stopped sending the body for CLIENT_READ_TIMEOUT_S (the server's socket read timeout)."""

    status = 408
    code = "upload_timeout"


def init_app(app: Flask) -> None:
    """Register the handlers; one per error family."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(EngineError, _handle_engine_error)
    for error in DATABASE_ERRORS:
        app.register_error_handler(error, _handle_database_unavailable)
    app.register_error_handler(StorageUnavailableError, _handle_storage_unavailable)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)


def error_response(status: int, code: str, message: str) -> Response:
    """The error in the form the caller expects: JSON for the API, a page for a browser."""
    if _wants_json():
        response = jsonify(error={"code": code, "message": message})
    else:
        response = Response(render_template("error.html", status=status, code=code, message=message))
    response.status_code = status
    return response


def _wants_json() -> bool:
    path = request.path
    return path.startswith("/api/") or path in ("/healthz", "/readyz")


def _handle_api_error(exc: ApiError) -> Response:
    response = error_response(exc.status, exc.code, exc.message)
    response.headers.update(exc.headers)
    return response


def _handle_engine_error(exc: EngineError) -> Response:
    status = ENGINE_STATUS.get(exc.code, 422)
    if status >= 500:  # the server's fault: the operator must hear of it
        log.error("%s on %s %s: %s", exc.code, request.method, request.path, exc.message)
    return error_response(status, exc.code, exc.message)


def _handle_database_unavailable(exc: Exception) -> Response:
    log.warning("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
    response = error_response(503, "database_unavailable",
                              "The database is unavailable at the moment; try again shortly.")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


def _handle_storage_unavailable(exc: StorageUnavailableError) -> Response:
    log.warning("object storage unavailable on %s %s: %s", request.method, request.path, exc)
    response = error_response(503, "storage_unavailable", "File storage is unavailable at the moment; try again shortly.")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = _too_large_message() if status == 413 else exc.description or exc.name
    response = error_response(status, HTTP_CODES.get(status, f"http_{status}"), message)
    # Keep what werkzeug adds, e.g. `Allow` on 405.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _too_large_message() -> str:
    limit_mb = current_app.config["MAX_UPLOAD_BYTES"] // (1024 * 1024)
    return f"The upload is larger than this server's limit of {limit_mb} MB."


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "An unexpected error occurred; it has been logged.")
