"""The Flask web app: REST API under /api/v1, light server-rendered pages, health checks.

Never imports torch or the worker: jobs are enqueued by task name (see `web.queue`).
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Flask

from shared.settings import Settings

MIB = 1024 * 1024
# Room for the multipart envelope and the option fields around the video itself.
FORM_OVERHEAD_BYTES = MIB


def create_app(settings: Settings | None = None, *, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app for `settings` (read from the environment when omitted).

    `test_config` overrides Flask config keys (e.g. ANALYSIS_QUEUE, TESTING).
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.from_mapping(_default_config(settings))
    if test_config:
        app.config.from_mapping(test_config)
    app.extensions["deepfake.settings"] = settings
    app.json.sort_keys = False  # keep documents in the order they are built: id and status first

    from web import api, auth, batches, db, errors, health, limits, metrics, pages, queue, security, storage

    db.init_app(app)
    storage.init_app(app)
    queue.init_app(app)
    limits.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    auth.init_app(app)  # after security: a cross-site write is refused before any key is looked up
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(pages.bp)
    return app


def _default_config(settings: Settings) -> dict[str, Any]:
    max_upload = settings.max_upload_mb * MIB
    return {
        # Signs the session that holds the pages' CSRF token. Without one configured, a key per process:
        # enough for `serve` (one process); several web processes must share SECRET_KEY.
        "SECRET_KEY": settings.secret_key or secrets.token_hex(32),
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_HTTPONLY": True,  # Flask's default, stated: no script reads the session
        # A page login (AUTH=keys) lasts a working day; revoking its key ends it at once (web/auth.py).
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "MAX_UPLOAD_BYTES": max_upload,
        "MAX_CONTENT_LENGTH": max_upload + FORM_OVERHEAD_BYTES,
        # Werkzeug also applies this to its parse buffer (64 KiB reads + leftovers): keep its default.
        "MAX_FORM_MEMORY_SIZE": 500_000,
        "MAX_FORM_PARTS": 64,
        # Where the web sends jobs: the first queue workers are told to consume.
        "ANALYSIS_QUEUE": settings.worker_queues[0],
    }
