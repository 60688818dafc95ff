"""Browser-facing protections: security headers, private caching, and refusing cross-site writes.

Jobs hold sensitive footage and faces, so nothing the server derives from an upload may be kept by a
shared cache, framed by another site, or changed by a request another site's page made.
"""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, request, session

from web.errors import ApiError

# The pages load their own script, style sheet and artifact images and fetch the API, nothing else;
# the job page's data is a `<script type="application/json">` block, which CSP does not execute.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
    "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it browsers send `Origin: null` on the pages' own form posts.
    "Referrer-Policy": "same-origin",
}
# Pages, JSON and artifacts all carry upload-derived data (names, verdicts, face crops).
PRIVATE_CACHE = "private, no-store"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The pages' forms carry this hidden field; its value lives in the signed session cookie.
CSRF_FIELD = "csrf_token"
_CSRF_SESSION_KEY = "csrf"


class CrossOriginRequestError(ApiError):
    status = 403
    code = "cross_origin_request"


class CsrfTokenError(ApiError):
    status = 403
    code = "csrf_token_invalid"


def init_app(app: Flask) -> None:
    app.before_request(refuse_cross_site_writes)
    app.after_request(add_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token


def csrf_token() -> str:
    """This browser session's form token, made on first use (templates call it for their forms)."""
    token = session.get(_CSRF_SESSION_KEY)
    if not token:
        token = session[_CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def require_csrf_token(submitted: str | None) -> None:
    """Refuse a page form whose token is missing or not this session's (compared in constant time)."""
    expected = session.get(_CSRF_SESSION_KEY)
    if not expected or not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise CsrfTokenError("this form has expired or did not come from this site: reload the page and try again")


def refuse_cross_site_writes() -> None:
    """Refuse a state-changing request that a browser sent from another site's page.

    Browsers send `Origin` on every POST/DELETE; API clients and the CLI send none and are allowed.
    """
    if request.method not in STATE_CHANGING:
        return
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin):
        raise CrossOriginRequestError(f"cross-site request refused: Origin {origin!r} is not this server")
    if origin is None and request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise CrossOriginRequestError("cross-site request refused")


def _same_origin(origin: str) -> bool:
    # Compare host and port only: behind a TLS-terminating proxy the app sees http while the page is https.
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def add_security_headers(response: Response) -> Response:
    """Every response: the security headers; all but static files: private, not stored.

    No `Server` header here: both servers write theirs before the app's headers, so one set here
    would be a second header, not a replacement (gunicorn's names no version; Werkzeug's does).
    """
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = PRIVATE_CACHE
        response.headers.pop("Expires", None)
    return response
