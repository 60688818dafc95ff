"""Web benchmark: status polls under 100 concurrent clients, and a 1 GB upload's effect on the web
process's memory (target: RSS growth < 50 MB).

Runs the real `deepfake web` (gunicorn, its default workers and threads) in a child process against SQLite
in a temporary DATA_DIR (or --database-url) and the Redis at --redis-url, on a queue of its own that is
deleted afterwards. Polls run back to back (the server's saturation: latency is then clients / throughput)
and at one poll per client per second, clients out of step (what the goal is about: the API asks clients
to wait Retry-After: 2 s between polls).

    .venv/bin/python bench/web_bench.py [--clients 100] [--seconds 10] [--intervals 0,1] [--upload-mb 1024]
        [--database-url postgresql://...]
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import redis
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from cli.client import MultipartFile  # noqa: E402
from shared.db.session import upgrade  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(*, data_dir: Path, redis_url: str, queue: str, port: int, database_url: str | None = None) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{data_dir / 'deepfake.db'}"
    upgrade(database_url)
    env = {**os.environ, "DATA_DIR": str(data_dir), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "SECRET_KEY": secrets.token_hex(16),  # gunicorn's processes share it (web refuses to start without)
           "WORKER_QUEUES": queue, "MAX_UPLOAD_MB": "4096"}
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "web", "--port", str(port)], cwd=REPO_ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(base + "/healthz", timeout=1).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the web app did not start")


def make_clip(path: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts", str(path)], check=True)
    return path


def make_big_ts(path: Path, *, unit: Path, megabytes: int) -> Path:
    """A large valid MPEG-TS: the unit clip's packets repeated (transport streams concatenate)."""
    data = unit.read_bytes()
    with open(path, "wb") as out:
        for _ in range(megabytes * 2**20 // len(data) + 1):
            out.write(data)
    return path


def submit(base: str, video: Path) -> tuple[requests.Response, float]:
    body = MultipartFile(path=video, fields={})
    started = time.perf_counter()
    try:
        response = requests.post(base + "/api/v1/jobs", data=body, headers={"Content-Type": body.content_type},
                                 timeout=600)
    finally:
        body.close()
    return response, time.perf_counter() - started


def poll_bench(base: str, job_id: str, *, clients: int, seconds: float, interval_s: float = 0.0) -> None:
    """`clients` threads polling the job's status, each every `interval_s` (0: back to back, which measures
    the server at saturation: latency is then queueing, clients / throughput)."""
    url = f"{base}/api/v1/jobs/{job_id}"
    deadline = time.perf_counter() + seconds
    errors = [0]

    def client() -> list[float]:
        latencies, session = [], requests.Session()
        time.sleep(random.uniform(0.0, interval_s))  # clients poll out of step, as independent ones do
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                ok = session.get(url, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors[0] += not ok
            time.sleep(max(0.0, interval_s - (time.perf_counter() - started)))
        return latencies

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = [f.result() for f in [pool.submit(client) for _ in range(clients)]]
    latencies = sorted(x for r in results for x in r)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    pace = f"each every {interval_s:g} s" if interval_s else "back to back"
    print(f"status polls: {clients} concurrent clients ({pace}) for {seconds:.0f} s: {len(latencies)} requests "
          f"({len(latencies) / seconds:.0f}/s), errors {errors[0]}, "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


class RssSampler(threading.Thread):
    """Peak resident memory of a process (and its children), sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.rss()
        self.stop = threading.Event()

    def rss(self) -> int:
        return self.process.memory_info().rss + sum(c.memory_info().rss for c in self.process.children(True))

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.rss())


def upload_bench(base: str, pid: int, *, video: Path) -> None:
    sampler = RssSampler(pid)
    sampler.start()
    response, elapsed = submit(base, video)
    sampler.stop.set()
    sampler.join()
    size_mb = video.stat().st_size / 2**20
    growth = (sampler.peak - sampler.baseline) / 2**20
    print(f"upload: {size_mb:.0f} MB in {elapsed:.1f} s ({size_mb / elapsed:.0f} MB/s), HTTP {response.status_code}; "
          f"web RSS {sampler.baseline / 2**20:.0f} MB → peak {sampler.peak / 2**20:.0f} MB "
          f"(growth {growth:.1f} MB; target < 50 MB: {'met' if growth < 50 else 'NOT met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", help="default: SQLite in a temporary DATA_DIR")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--upload-mb", type=int, default=1024)
    parser.add_argument("--intervals", default="0,1", help="seconds between one client's polls, per run (0: back to back)")
    args = parser.parse_args()
    queue = f"bench-web-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        folder = Path(tmp)
        port = free_port()
        web = start_web(data_dir=folder / "data", redis_url=args.redis_url, queue=queue, port=port,
                        database_url=args.database_url)
        base = f"http://127.0.0.1:{port}"
        try:
            clip = make_clip(folder / "clip.ts")
            job = submit(base, clip)[0].json()
            from bench.engine_bench import _vector_features

            print(f"CPU: {os.cpu_count()} logical cores, {_vector_features()}; the clients run on the same cores")
            for interval in (float(x) for x in args.intervals.split(",")):
                poll_bench(base, job["id"], clients=args.clients, seconds=args.seconds, interval_s=interval)
            if args.upload_mb:
                big = make_big_ts(folder / "big.ts", unit=clip, megabytes=args.upload_mb)
                upload_bench(base, web.pid, video=big)
        finally:
            web.terminate()
            web.wait(timeout=30)
            redis.Redis.from_url(args.redis_url).delete(queue)
    return 0


if __name__ == "__main__":
    sys.exit(main())
