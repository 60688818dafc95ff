"""`deepfake web` (gunicorn, and werkzeug as `serve` runs it) gives up on a client that stalls.

A real server process with CLIENT_READ_TIMEOUT_S=1 and raw sockets that stop sending: a stalled upload
body is answered 408 `upload_timeout` with nothing left in DATA_DIR, and a stalled request head is
dropped, so neither holds a request thread forever.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from cli.service import free_port
from tests.conftest import REDIS_URL, REPO_ROOT, stop_process_group, wait_for

BOUNDARY = "stalled"
# How long the test waits for the server to act on a 1 s timeout before calling it a failure.
GIVE_UP_S = 60


@pytest.fixture(params=["gunicorn", "werkzeug"])
def web(request, tmp_path: Path) -> Iterator[tuple[int, Path, str, Path]]:
    """`deepfake web --server <param>` with a 1 s read timeout and the per-owner limits off; yields its
    port, uploads folder, server name and log."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({"REDIS_URL": REDIS_URL, "DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
                "DATA_DIR": str(tmp_path / "var"), "WEIGHTS_DIR": str(tmp_path / "weights"),
                "CLIENT_READ_TIMEOUT_S": "1", "RATE_LIMIT_PER_MINUTE": "0", "MAX_ACTIVE_JOBS_PER_OWNER": "0",
                "MAX_STORAGE_MB_PER_OWNER": "0", "WORKER_QUEUES": f"timeouts-{port}", "PYTHONUNBUFFERED": "1"})
    subprocess.run([sys.executable, "-m", "cli.main", "db", "upgrade"], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    with open(tmp_path / "web.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "cli.main", "web", "--server", request.param,
                                    "--port", str(port), "--workers", "1", "--threads", "2"],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for(lambda: _healthy(port), timeout=30, what=f"{request.param} to answer")
        yield port, tmp_path / "var" / "uploads", request.param, tmp_path / "web.log"
    finally:
        stop_process_group(process)


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    except requests.ConnectionError:
        return False


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(GIVE_UP_S)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_a_stalled_upload_body_is_answered_408_and_nothing_is_kept(web):
    port, uploads_dir, _, _ = web
    part = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"slow.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode() + b"\0" * 4096
    head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 1000000\r\n\r\n").encode()
    with _connect(port) as sock:
        sock.sendall(head + part)
        response = _read_all(sock)

    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.split(b" ")[1] == b"408", response[:500]
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "upload_timeout"
    assert "CLIENT_READ_TIMEOUT_S" in body["error"]["message"]
    assert not uploads_dir.exists() or list(uploads_dir.iterdir()) == []
    assert _healthy(port)


def test_a_stalled_request_head_is_dropped(web):
    port, _, server, log = web
    with _connect(port) as sock:
        sock.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multi")
        response = _read_all(sock)

    # The connection ends without the request being served (werkzeug may say 408 first; gunicorn just closes).
    assert response == b"" or response.startswith(b"HTTP/1.") and b" 408 " in response.split(b"\r\n")[0]
    assert _healthy(port)
    if server == "gunicorn":  # one line per dropped client, not a traceback
        text = log.read_text()
        assert "dropped a client that sent nothing for 1 s" in text and "Traceback" not in text
