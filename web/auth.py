"""Who is asking: an API key (`Authorization: Bearer`), a page login holding a key's id, or nobody.

AUTH=none (and none-allow-network): no accounts; every request acts as DEFAULT_OWNER. `deepfake serve`
and `deepfake web` allow it only on a loopback address unless the operator chose none-allow-network.
AUTH=keys: the API answers 401 without a valid key; the pages redirect to /login, where a person pastes
a key (there is no user/password store: a key is the one credential) and gets a session cookie that
holds the key's id only, checked against the database on every request, so revoking a key also ends
its page sessions. The health checks, /metrics (an operator endpoint: counts, no job contents or
owners), static files and the OpenAPI document stay open.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from shared.db import keys as key_store
from shared.settings import AUTH_KEYS, AUTH_NONE, Settings
from web.context import Principal, current_settings
from web.db import get_session
from web.errors import ApiError, error_response
from web.security import CSRF_FIELD, require_csrf_token

bp = Blueprint("auth", __name__)
OPEN_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "metrics.metrics", "static", "api.openapi_document",
                            "auth.login_page", "auth.login", "auth.logout"})
BEARER = "Bearer"
REALM = 'Bearer realm="deepfake"'
_SESSION_KEY = "api_key_id"
KEY_FIELD = "api_key"


class UnauthorizedError(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, key_refused: bool = False) -> None:
        super().__init__(message)
        self.key_refused = key_refused


def init_app(app: Flask) -> None:
    """The session cookie's Secure rule, the check before every view, the 401 response, the login pages."""
    app.session_interface = SessionCookies()
    app.before_request(authenticate)
    app.register_error_handler(UnauthorizedError, _handle_unauthorized)
    app.context_processor(lambda: {"signed_in_as": signed_in_as()})
    app.register_blueprint(bp)


def authenticate() -> Response | None:
    """Before every view: who is asking (stored on `g` for `web.context.current_principal`), or a 401
    for the API and a redirect to the login page for the pages."""
    settings = current_settings()
    if settings.auth != AUTH_KEYS:
        g.principal = Principal(owner=settings.owner)
        return None
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    header = request.headers.get("Authorization")
    principal = _from_header(header) if header is not None else _from_session()
    if principal is not None:
        g.principal = principal
        return None
    if request.path.startswith("/api/"):
        raise UnauthorizedError("this API needs an API key: send Authorization: Bearer <key> "
                                "(an operator creates one with `deepfake keys create`)")
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("auth.login_page", next=target))


def _from_header(header: str) -> Principal:
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != BEARER.lower() or not key.strip():
        raise UnauthorizedError("the Authorization header must be: Bearer <API key>", key_refused=True)
    row = key_store.verify_key(session=get_session(), key=key.strip())
    if row is None:
        raise UnauthorizedError("this API key is not valid: unknown, mistyped or revoked", key_refused=True)
    return Principal(owner=row.owner, admin=row.admin, key_id=row.id)


def _from_session() -> Principal | None:
    key_id = session.get(_SESSION_KEY)
    row = key_store.get_active_key(session=get_session(), key_id=key_id) if isinstance(key_id, str) else None
    if row is None:
        session.pop(_SESSION_KEY, None)
        return None
    return Principal(owner=row.owner, admin=row.admin, key_id=row.id)


def signed_in_as() -> str | None:
    """The owner a page session acts for (the nav shows it with a log-out button); None without a login."""
    principal = g.get("principal")
    if principal is None or principal.key_id is None or session.get(_SESSION_KEY) != principal.key_id:
        return None
    return f"{principal.owner} (admin)" if principal.admin else principal.owner


@bp.get("/login")
def login_page() -> Response | str:
    """Paste an API key to use the pages."""
    if current_settings().auth != AUTH_KEYS:
        return redirect(url_for("pages.upload_page"))
    return render_template("login.html", next=safe_next(request.args.get("next")), error=None)


@bp.post("/login")
def login() -> Response | tuple[str, int]:
    """Check the pasted key; a valid one starts a page session (the cookie holds only the key's id)."""
    if current_settings().auth != AUTH_KEYS:
        return redirect(url_for("pages.upload_page"), code=303)
    require_csrf_token(request.form.get(CSRF_FIELD))
    target = safe_next(request.form.get("next"))
    row = key_store.verify_key(session=get_session(), key=(request.form.get(KEY_FIELD) or "").strip())
    if row is None:
        return render_template("login.html", next=target,
                               error="That key is not valid: unknown, mistyped or revoked."), 401
    session.clear()  # a fresh session (and CSRF token) for the signed-in person
    session.permanent = True
    session[_SESSION_KEY] = row.id
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> Response:
    """End the page session."""
    require_csrf_token(request.form.get(CSRF_FIELD))
    session.clear()
    target = "auth.login_page" if current_settings().auth == AUTH_KEYS else "pages.upload_page"
    return redirect(url_for(target), code=303)


def safe_next(raw: str | None) -> str:
    """Where to go after logging in: a path on this site only (never another host: no open redirect)."""
    if not raw or not raw.startswith("/") or raw.startswith(("//", "/\\")) or not raw.isprintable():
        return "/"
    parts = urlsplit(raw)
    return raw if not parts.scheme and not parts.netloc else "/"


def _handle_unauthorized(exc: UnauthorizedError) -> Response:
    response = error_response(exc.status, exc.code, exc.message)
    response.headers["WWW-Authenticate"] = f'{REALM}, error="invalid_token"' if exc.key_refused else REALM
    return response


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure per request: SESSION_COOKIE_SECURE=true/false, or
    auto: when the request came over https, directly or through a proxy's `X-Forwarded-Proto: https`.

    Trusting that header here alone is safe: a client that forges it only gets a cookie its own browser
    will not send back over http. (ProxyFix would also make the app trust forwarded hosts and addresses.)
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        mode = app.extensions["deepfake.settings"].session_cookie_secure
        if mode != "auto":
            return mode == "true"
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return request.is_secure or forwarded == "https"


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches this machine only (127.0.0.0/8, ::1, localhost); a name other
    than localhost counts as a network address."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_refusal(settings: Settings, *, host: str, processes: int = 1) -> str | None:
    """Why `serve`/`web` must not start with these settings on `host`, or None.

    Without accounts only a loopback address is allowed, unless the operator set AUTH=none-allow-network.
    Several web processes must share SECRET_KEY, in every mode: it signs the session cookie that holds the
    pages' CSRF token (and the login).
    """
    if settings.auth == AUTH_NONE and not is_loopback(host):
        return (f"refusing to listen on {host} without accounts (AUTH=none): anyone who reaches this port "
                "could read, cancel and delete every job. Set AUTH=keys and create a key with "
                "`deepfake keys create --owner NAME`; or, on a network you trust, set AUTH=none-allow-network")
    if processes > 1 and not settings.secret_key:
        return (f"{processes} web processes need SECRET_KEY: it signs the session cookie (the pages' CSRF token, "
                "and the login with AUTH=keys), and every process must accept the cookies the others sign; "
                "without it a page's form fails whenever its POST reaches another process")
    return None


def listen_notice(settings: Settings, *, host: str) -> str:
    """The one line `serve`/`web` print at start to say who may use the service."""
    if settings.auth == AUTH_KEYS:
        return ("accounts on (AUTH=keys): the API needs an API key (Authorization: Bearer), the pages a login; "
                "create keys with `deepfake keys create --owner NAME`")
    if settings.auth == AUTH_NONE:
        return (f"no login (AUTH=none): single-user mode, every request acts as {settings.owner!r}; only this "
                f"machine can connect ({host}), but so can a proxy on it: set AUTH=keys before exposing it")
    return (f"no login on a network address (AUTH=none-allow-network): whoever reaches {host} acts as "
            f"{settings.owner!r} and sees every job")
