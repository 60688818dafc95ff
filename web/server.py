"""The request handler of the threaded Werkzeug server that `deepfake serve` runs the app in.

Werkzeug writes `Server: Werkzeug/<version> Python/<version>` before the app's own headers, so the
app cannot remove it; the banner tells an attacker exactly which versions to look up and nobody
else anything. (`deepfake web` runs gunicorn, which names no version.)
"""
from __future__ import annotations

from werkzeug.serving import WSGIRequestHandler

SERVER_NAME = "deepfake"


class BannerlessRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with a `Server` header that names no software version."""

    def version_string(self) -> str:
        return SERVER_NAME
