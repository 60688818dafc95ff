"""Stalled uploads against `deepfake web`: how many server threads they hold, for how long, and
whether the site still answers meanwhile.

Starts `deepfake web` (gunicorn, or `--server werkzeug` as `serve` runs it) on a temporary SQLite
database and DATA_DIR against the Redis at REDIS_URL, opens N connections that each send the headers
of a multipart upload of 10 MB and its first KiB, then send nothing more. Every second it prints the
threads of the server's processes (psutil, the arbiter and its workers together), how many stalled
clients have had an answer (and which status), and how long GET /healthz took (or that it did not
answer within 2 s). The rate limit and quotas are off, so every client reaches the body read.

    .venv/bin/python bench/slow_clients_bench.py --server werkzeug --timeout 0    # before: no read timeout
    .venv/bin/python bench/slow_clients_bench.py --server werkzeug --timeout 5    # CLIENT_READ_TIMEOUT_S=5
    .venv/bin/python bench/slow_clients_bench.py --server gunicorn --timeout 5 --seconds 120
"""
from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BOUNDARY = "benchboundary"
DECLARED_BYTES = 10 * 1024 * 1024
FIRST_BYTES = 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=("gunicorn", "werkzeug"), default="gunicorn")
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--timeout", type=int, default=5, help="CLIENT_READ_TIMEOUT_S for the server (0: none)")
    parser.add_argument("--seconds", type=int, default=30, help="how long to watch")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as folder:
        server, base = start_web(Path(folder), server=args.server, timeout_s=args.timeout, redis_url=args.redis_url)
        try:
            run(server, base, clients=args.clients, seconds=args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


def start_web(folder: Path, *, server: str, timeout_s: int, redis_url: str) -> tuple[subprocess.Popen, str]:
    from cli.service import free_port

    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{folder / 'web.db'}",
           "DATA_DIR": str(folder / "data"), "WEIGHTS_DIR": str(folder / "weights"), "WORKER_QUEUES": "slow-bench",
           "CLIENT_READ_TIMEOUT_S": str(timeout_s), "RATE_LIMIT_PER_MINUTE": "0", "MAX_ACTIVE_JOBS_PER_OWNER": "0",
           "MAX_STORAGE_MB_PER_OWNER": "0", "SECRET_KEY": "slow-clients-bench"}
    subprocess.run([sys.executable, "-m", "cli.main", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    log = open(folder / "web.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "web", "--server", server, "--port", str(port)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if healthz_s(base) is not None:
            return process, base
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the web server did not answer; see {folder / 'web.log'}")


def stalled_upload(port: int) -> socket.socket:
    """A connection that sent an upload's headers and first KiB, and will send nothing more."""
    sock = socket.create_connection(("127.0.0.1", port))
    part = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"slow.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode() + b"\0" * FIRST_BYTES
    head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {DECLARED_BYTES}\r\n\r\n")
    sock.sendall(head.encode() + part)
    sock.setblocking(False)
    return sock


def run(server: subprocess.Popen, base: str, *, clients: int, seconds: int) -> None:
    port = int(base.rsplit(":", 1)[1])
    idle = server_threads(server.pid)
    print(f"server threads before: {idle}; opening {clients} stalled uploads", flush=True)
    selector = selectors.DefaultSelector()
    for _ in range(clients):
        selector.register(stalled_upload(port), selectors.EVENT_READ)
    answered: Counter[str] = Counter()
    start = time.monotonic()
    print(f"{'t (s)':>6} {'threads':>8} {'answered':>9} {'healthz':>9}  statuses", flush=True)
    while time.monotonic() - start < seconds:
        tick = time.monotonic()
        for key, _ in selector.select(timeout=0):
            answered[_status(key.fileobj)] += 1
            selector.unregister(key.fileobj)
            key.fileobj.close()
        took = healthz_s(base)
        health = "no answer" if took is None else f"{took * 1000:.0f} ms"
        print(f"{tick - start:6.0f} {server_threads(server.pid):8d} {sum(answered.values()):9d} {health:>9}  "
              f"{dict(answered)}", flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    for key in list(selector.get_map().values()):
        key.fileobj.close()


def _status(sock: socket.socket) -> str:
    try:
        head = sock.recv(64)
    except OSError as exc:
        return type(exc).__name__
    return head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else ("closed" if not head else "other")


def server_threads(pid: int) -> int:
    process = psutil.Process(pid)
    return sum(p.num_threads() for p in [process, *process.children(recursive=True)])


def healthz_s(base: str) -> float | None:
    start = time.monotonic()
    try:
        requests.get(f"{base}/healthz", timeout=2).raise_for_status()
    except requests.RequestException:
        return None
    return time.monotonic() - start


if __name__ == "__main__":
    raise SystemExit(main())
