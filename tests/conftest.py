"""Shared fixtures: real databases (SQLite and PostgreSQL), real Redis, real Celery workers.

Isolation, so parallel runs on one machine never collide:
- PostgreSQL: one fresh database `test_<random>` per test session (dropped at the end), tables
  emptied after each test;
- SQLite: one file per test;
- Redis: each test gets its own Celery queue name; only the keys of that queue are deleted.
"""
from __future__ import annotations

import functools
import http.server
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis
from sqlalchemy import create_engine, text

from shared.db.session import make_engine, make_session_factory, upgrade
from shared.settings import Settings

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    name = f"test_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE jobs, job_windows, artifacts, batches, api_keys, webhook_events"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, then the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        upgrade(url)
        yield url
        return
    url = request.getfixturevalue("postgres_database_url")
    _empty_postgres(url)
    yield url
    _empty_postgres(url)


@pytest.fixture
def db_session_factory(database_url: str):
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def task_queue(redis_url: str) -> Iterator[str]:
    """A Celery queue name of this test alone; its Redis keys are deleted afterwards."""
    name = f"analysis-test-{secrets.token_hex(6)}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str, task_queue: str) -> Settings:
    """Settings with a temporary DATA_DIR and WEIGHTS_DIR, the test's database and queue."""
    (tmp_path / "weights").mkdir()
    (tmp_path / "data").mkdir()
    return replace(
        Settings(),
        weights_dir=tmp_path / "weights",
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_url,
        worker_queues=(task_queue,),
        device="cpu",
    )


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a child process needs to rebuild `settings` with Settings.from_env."""
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    env.update({
        "WEIGHTS_DIR": str(settings.weights_dir),
        "DATA_DIR": str(settings.data_dir),
        "WORKER_QUEUES": ",".join(settings.worker_queues),
        "JOB_MAX_ATTEMPTS": str(settings.job_max_attempts),
        "HEARTBEAT_TIMEOUT_S": str(settings.heartbeat_timeout_s),
        "DEVICE": settings.device,
        "PYTHONUNBUFFERED": "1",
    })
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    env.update(extra)
    return env


def stop_process_group(process: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    """Signal the process's whole group and wait; SIGKILL the group if it does not stop in time."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start real `deepfake worker` processes (own process group each); all are stopped afterwards."""
    started: list[subprocess.Popen] = []

    def start(settings: Settings, *, name: str = "w1", pool: str = "solo", concurrency: int = 1,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{name}.log", "wb")
        command = [sys.executable, "-m", "cli.main", "worker", "--pool", pool,
                   "--concurrency", str(concurrency), "--hostname", f"{name}-{secrets.token_hex(3)}@%h"]
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env or settings_env(settings),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process_group(process)


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder under /files/ (a base URL with a path, as a real mirror's has), without logging."""

    def translate_path(self, path: str) -> str:
        return super().translate_path(path.replace("/files/", "/", 1))

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving tmp_path/served; yields (base_url, folder)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietFileHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/files", served
    finally:
        httpd.shutdown()
        httpd.server_close()


PUBLISHED_DETECTOR = REPO_ROOT / "weights" / "retinaface-mobilenet0.25.onnx"


@pytest.fixture(scope="session")
def published_detector_weights() -> Path:
    """The trained RetinaFace MobileNet0.25 (ONNX) that the test command installs into weights/."""
    if not PUBLISHED_DETECTOR.is_file():
        pytest.fail(f"{PUBLISHED_DETECTOR} is missing: scripts/test.sh installs it "
                    "(`deepfake weights fetch retinaface-mobilenet0.25`)")
    return PUBLISHED_DETECTOR


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto's) on loopback for this test session; no real S3 is reachable."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str) -> Settings:
    """`settings` with STORAGE=s3 on a fresh bucket of the loopback S3 server."""
    from shared.storage import s3_client

    configured = replace(settings, storage="s3", s3_bucket=f"deepfake-{secrets.token_hex(6)}", s3_prefix="svc/",
                         s3_endpoint_url=s3_endpoint, s3_region="us-east-1", s3_access_key_id="test",
                         s3_secret_access_key="test")
    s3_client(configured).create_bucket(Bucket=configured.s3_bucket)
    return configured
