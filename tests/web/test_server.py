"""serve's Werkzeug server: no version banner, and a bound on the connections served at once."""
from __future__ import annotations

import socket
import threading

import requests

from tests.conftest import wait_for
from web.server import BannerlessRequestHandler, BoundedThreadedWSGIServer


class _TimedHandler(BannerlessRequestHandler):
    timeout = 3  # as serve sets CLIENT_READ_TIMEOUT_S

    def log(self, type: str, message: str, *args) -> None:
        pass


def _handler_threads() -> int:
    return sum("process_request_thread" in thread.name for thread in threading.enumerate())


def test_stalled_clients_take_at_most_max_threads_and_later_requests_are_served(app):
    server = BoundedThreadedWSGIServer("127.0.0.1", 0, app, handler=_TimedHandler, max_threads=2)
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    stalled = []
    try:
        for _ in range(5):  # each sends half a request head and stops
            sock = socket.create_connection(("127.0.0.1", server.server_port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            stalled.append(sock)
        wait_for(lambda: _handler_threads() == 2, timeout=10, what="two handler threads")
        seen = []
        watcher = threading.Event()

        def watch() -> None:
            while not watcher.wait(0.05):
                seen.append(_handler_threads())

        threading.Thread(target=watch, daemon=True).start()
        # Served once the stalled connections time out, two at a time, never more than two threads.
        response = requests.get(f"http://127.0.0.1:{server.server_port}/healthz", timeout=60)
        watcher.set()
        assert response.status_code == 200 and response.headers["Server"] == "deepfake"
        assert seen and max(seen) <= 2
    finally:
        for sock in stalled:
            sock.close()
        server.shutdown()
        server.server_close()
