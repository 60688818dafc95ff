"""Web fixtures: the app on the test's real database and Redis queue, a tiny real video, job helpers.

Jobs are moved through their states with shared.db's own worker-facing functions (claim,
progress, complete, fail), so the API reads exactly what a worker would have written.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from shared.db import jobs as job_store
from shared.db.artifacts import write_artifacts
from shared.model.result import AnalysisResult, Artifact, TrackResult
from shared.model.types import Reason, WindowScore
from shared.settings import Settings
from tests.media import make_face_clip
from web.server import BannerlessRequestHandler
from web import create_app


@pytest.fixture(scope="session")
def video_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-second 10 fps 160x120 H.264 clip with a face."""
    return make_face_clip(tmp_path_factory.mktemp("media") / "face.mp4", width=160, height=120)


def build_app(settings: Settings) -> Flask:
    return create_app(settings, test_config={"TESTING": True})


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = build_app(settings)
    yield app
    app.extensions["deepfake.db"]["engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def session_factory(app: Flask):
    """Sessions on the app's own engine, for arranging and checking database state."""
    return app.extensions["deepfake.db"]["session_factory"]


@pytest.fixture
def queued_tasks(redis_url: str, task_queue: str) -> Callable[[], list[tuple[str, list]]]:
    """Read back (task name, args) of every message waiting in this test's Redis queue."""
    def read() -> list[tuple[str, list]]:
        client = redis.Redis.from_url(redis_url)
        try:
            raw = client.lrange(task_queue, 0, -1)
        finally:
            client.close()
        messages = [json.loads(item) for item in raw]
        return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]

    return read


def page_csrf_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token a page's form carries (the client keeps the session cookie that matches it)."""
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def uploads(settings: Settings) -> list[Path]:
    folder = settings.uploads_dir
    return sorted(folder.iterdir()) if folder.exists() else []


def job_count(session_factory) -> int:
    from sqlalchemy import func, select

    from shared.db.models import Job

    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Job))


def record_job(session_factory, *, owner: str, name: str = "clip.mp4", params: dict | None = None) -> str:
    """Record a queued job directly (as the API would, without an upload); returns its id."""
    with session_factory() as session:
        job = job_store.create_job(session=session, owner=owner, params=params or {}, upload_name=name,
                                   stored_name=f"{name}.bin", upload_size=123, upload_sha256="0" * 64)
        session.commit()
        return job.id


@pytest.fixture
def make_job(session_factory, settings: Settings) -> Callable[..., str]:
    def make(*, owner: str | None = None, name: str = "clip.mp4", params: dict | None = None) -> str:
        return record_job(session_factory, owner=owner or settings.owner, name=name, params=params)

    return make


def engine_result(*, verdict: str = "FAKE", probability: float = 0.91, with_artifact: bool = True) -> AnalysisResult:
    """An engine result built with the engine's own result classes (two tracks, four windows each)."""
    tracks = [
        TrackResult(id=track, fake_probability=p, verdict=verdict, first_frame=0, last_frame=19, frames=20,
                    windows=[WindowScore(track, 4 * i, 4 * i + 7, 0.4 * i, 0.4 * i + 0.7, p - 0.05 * i)
                             for i in range(4)])
        for track, p in ((0, probability), (1, probability - 0.2))
    ]
    artifacts = [Artifact("heatmap-t0-w0.png", "image/png", PNG_1PX, 0, "Heatmap of track 0, 0.0–0.7 s")] \
        if with_artifact else []
    reasons = [Reason("few_frames", "only 20 frames were analysed")] if verdict == "INCONCLUSIVE" else []
    return AnalysisResult(
        verdict=verdict, fake_probability=probability, reasons=reasons,
        warnings=[Reason("low_resolution", "faces are smaller than 64 pixels")],
        video={"frames": 20, "fps": 10.0, "duration_s": 2.0, "width": 160, "height": 120},
        frames_analyzed=20, model={"name": "model_90_acc_8_frames_test.pt", "threshold": 0.5},
        params={"sequence_length": 8}, tracks=tracks, timings={"total_s": 1.5}, artifacts=artifacts)


# The smallest valid PNG (1×1, grey); enough for the artifact endpoint and an <img>.
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")


def move_job(session_factory, settings: Settings, job_id: str, to: str, *,
             result: AnalysisResult | None = None) -> None:
    """Move a job as a worker would: 'running' (with progress and windows), 'succeeded' or 'failed'."""
    with session_factory() as session:
        claimed = job_store.claim_job(session=session, job_id=job_id, worker="test-worker", stale_after_s=60)
        assert claimed is not None
        windows = engine_result().tracks[0].windows[:2]
        job_store.record_progress(session=session, job_id=job_id, frames_done=8, frames_total=20, windows=windows)
        if to == "succeeded":
            finished = result or engine_result()
            stored = write_artifacts(artifacts_dir=settings.artifacts_dir, job_id=job_id, attempt=claimed.attempts,
                                     artifacts=finished.artifacts)
            job_store.complete_job(session=session, job_id=job_id, result=finished.to_dict(), artifacts=stored)
        elif to == "failed":
            job_store.fail_job(session=session, job_id=job_id, code="no_decodable_frames",
                               message="no frame of the video could be decoded")


@pytest.fixture
def advance_job(session_factory, settings: Settings) -> Callable[..., None]:
    def advance(job_id: str, to: str, *, result: AnalysisResult | None = None) -> None:
        move_job(session_factory, settings, job_id, to, result=result)

    return advance


class _QuietHandler(BannerlessRequestHandler):
    """The handler `serve` uses, without its access log: the CLI tests read the client's own stderr."""

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


@contextmanager
def running_server(app: Flask) -> Iterator[str]:
    """Serve `app` over real HTTP (werkzeug, threaded) on a free port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def other_owner_app(settings: Settings) -> Iterator[Flask]:
    """The same service as seen by another owner (same database and queue)."""
    other = build_app(replace(settings, owner="someone-else"))
    yield other
    other.extensions["deepfake.db"]["engine"].dispose()
