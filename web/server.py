"""The threaded Werkzeug server that `deepfake serve` runs the app in, and its request handler.

Werkzeug writes `Server: Werkzeug/<version> Python/<version>` before the app's own headers, so the
app cannot remove it; the banner tells an attacker exactly which versions to look up and nobody
else anything. (`deepfake web` runs gunicorn, which names no version.)
"""
from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

SERVER_NAME = "deepfake"


class BannerlessRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with a `Server` header that names no software version."""

    def version_string(self) -> str:
        return SERVER_NAME


class BoundedThreadedWSGIServer(ThreadedWSGIServer):
    """Werkzeug's thread-per-connection server with at most `max_threads` connections served at once.

    Werkzeug alone starts a thread for every connection it accepts, without bound. Here, when every slot
    is busy the accept loop waits, so further connections queue in the kernel's listen backlog instead
    of each taking a thread (and its stack) in this process.
    """

    def __init__(self, host: str, port: int, app: Any, *, handler: type[WSGIRequestHandler],
                 max_threads: int) -> None:
        super().__init__(host, port, app, handler=handler)
        self.max_threads = max_threads
        self._slots = threading.BoundedSemaphore(max_threads)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
