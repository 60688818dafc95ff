"""Per-owner limits on the API's writes and probe-time limits, on the real database, Redis and queue.

The rate limiter counts in the real Redis under a key that holds the test's own queue name, so the
`task_queue` fixture deletes it afterwards and parallel runs never share a count.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from typing import Callable

import pytest
import redis
import requests
from urllib3 import encode_multipart_formdata

from shared.db import jobs as job_store
from tests.web.conftest import build_app, job_count, record_job, running_server, uploads

MIB = 1024 * 1024


@pytest.fixture
def make_client(settings) -> Callable[..., object]:
    """A test client of an app built with `settings` changed as given (its engine disposed afterwards)."""
    apps = []

    def make(**changes):
        app = build_app(replace(settings, **changes))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["deepfake.db"]["engine"].dispose()


def _post_job(client, path, *, name="clip.mp4"):
    with open(path, "rb") as video:
        return client.post("/api/v1/jobs", data={"video": (video, name)})


def _create_batch(client):
    return client.post("/api/v1/batches", json={"name": "b", "options": {"face_detector": "none"}})


def _add_item(client, batch: dict, path):
    with open(path, "rb") as video:
        return client.post(batch["links"]["items"], data={"video": (video, path.name)})


def _nothing_kept(settings, session_factory, queued_tasks) -> bool:
    return uploads(settings) == [] and queued_tasks() == [] and job_count(session_factory) == 0


# --- probe-time limits ------------------------------------------------------------------------------
@pytest.mark.parametrize("change, code, setting", [
    ({"max_video_pixels": 160 * 120 - 1}, "video_too_large", "MAX_VIDEO_PIXELS"),
    ({"max_video_duration_s": 1}, "video_too_long", "MAX_VIDEO_DURATION_S"),
    ({"max_video_fps": 9}, "frame_rate_too_high", "MAX_VIDEO_FPS"),
])
def test_a_video_over_a_probe_limit_is_422_and_nothing_is_kept(make_client, settings, video_clip, queued_tasks,
                                                                session_factory, change, code, setting):
    response = _post_job(make_client(**change), video_clip)

    assert response.status_code == 422
    assert response.json["error"]["code"] == code
    message = response.json["error"]["message"]
    assert setting in message and "'clip.mp4'" in message and str(settings.data_dir) not in message
    assert _nothing_kept(settings, session_factory, queued_tasks)


def test_a_batch_item_over_a_probe_limit_is_a_failed_item(make_client, settings, video_clip):
    client = make_client(max_video_pixels=1000)
    batch = _create_batch(client).json

    item = _add_item(client, batch, video_clip)

    assert item.status_code == 201
    assert item.json["status"] == "failed" and item.json["error"]["code"] == "video_too_large"
    assert uploads(settings) == []


# --- rate limit -------------------------------------------------------------------------------------
def _in_one_window(attempt: Callable[[str], object]) -> object:
    """Run `attempt(owner)` until one run starts and ends in the same minute (a fresh owner each run,
    so a run cut by a window boundary leaves no count behind for the next)."""
    for _ in range(3):
        window = int(time.time() // 60)
        outcome = attempt(f"rate-{uuid.uuid4().hex[:8]}")
        if int(time.time() // 60) == window:
            return outcome
    pytest.fail("three runs in a row crossed a minute boundary")


def test_writes_past_the_rate_limit_are_429_with_retry_after(make_client, redis_url, task_queue):
    def attempt(owner):
        client = make_client(rate_limit_per_minute=2, owner=owner)
        return [_create_batch(client) for _ in range(3)], make_client(rate_limit_per_minute=2).post(
            "/api/v1/batches", json={"name": "other owner"})

    responses, other_owner = _in_one_window(attempt)

    assert [r.status_code for r in responses] == [201, 201, 429]
    refused = responses[2]
    assert refused.json["error"]["code"] == "rate_limited"
    assert "RATE_LIMIT_PER_MINUTE" in refused.json["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other_owner.status_code == 201  # each owner has its own count
    # Counted under this deployment's queue base, which the task_queue fixture cleans up.
    assert redis.Redis.from_url(redis_url).keys(f"deepfake:rate:{task_queue}:rate-*")


def test_a_rate_limited_upload_is_refused_before_its_body_is_stored(make_client, settings, video_clip,
                                                                   queued_tasks, session_factory):
    def attempt(owner):
        client = make_client(rate_limit_per_minute=1, owner=owner)
        return _post_job(client, video_clip), _post_job(client, video_clip)

    first, second = _in_one_window(attempt)

    assert (first.status_code, second.status_code) == (202, 429)
    assert second.json["error"]["code"] == "rate_limited" and "Retry-After" in second.headers
    assert len(uploads(settings)) == 1 and len(queued_tasks()) == 1 and job_count(session_factory) == 1


def test_batch_items_count_against_the_rate(make_client, video_clip):
    def attempt(owner):
        client = make_client(rate_limit_per_minute=2, owner=owner)
        batch = _create_batch(client).json
        return _add_item(client, batch, video_clip), _add_item(client, batch, video_clip)

    item, refused = _in_one_window(attempt)

    assert (item.status_code, refused.status_code) == (201, 429)
    assert refused.json["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("change", [{"rate_limit_per_minute": 0}, {"redis_url": None}],
                         ids=["limit 0", "no Redis configured"])
def test_no_rate_limit_when_off_or_without_redis(make_client, change):
    client = make_client(**{"rate_limit_per_minute": 1, **change})

    assert [_create_batch(client).status_code for _ in range(4)] == [201] * 4


def test_an_unreachable_redis_lets_writes_through_with_a_warning(make_client, caplog):
    client = make_client(rate_limit_per_minute=1, redis_url="redis://127.0.0.1:9/0")

    with caplog.at_level(logging.WARNING, logger="web.limits"):
        statuses = [_create_batch(client).status_code for _ in range(3)]

    assert statuses == [201] * 3
    assert sum("rate limit not applied: Redis unreachable" in r.getMessage() for r in caplog.records) == 3


# --- active-job quota -------------------------------------------------------------------------------
def test_active_jobs_past_the_quota_are_429_and_ended_jobs_do_not_count(make_client, settings, video_clip,
                                                                        session_factory, advance_job):
    client = make_client(max_active_jobs_per_owner=2)
    running, queued = (record_job(session_factory, owner=settings.owner) for _ in range(2))
    advance_job(running, "running")
    record_job(session_factory, owner="someone-else")

    refused = _post_job(client, video_clip)

    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "too_many_active_jobs"
    assert "MAX_ACTIVE_JOBS_PER_OWNER" in refused.json["error"]["message"]
    assert uploads(settings) == []
    advance_job(queued, "succeeded")
    assert _post_job(client, video_clip).status_code == 202


def test_a_batch_item_past_the_active_quota_is_429_not_a_failed_item(make_client, settings, video_clip,
                                                                      session_factory):
    client = make_client(max_active_jobs_per_owner=1)
    batch = _create_batch(client).json
    assert _add_item(client, batch, video_clip).status_code == 201

    refused = _add_item(client, batch, video_clip)

    assert refused.status_code == 429 and refused.json["error"]["code"] == "too_many_active_jobs"
    assert len(client.get(batch["links"]["self"]).json["items"]) == 1
    assert len(uploads(settings)) == 1


# --- storage quota ----------------------------------------------------------------------------------
def _hold_storage(session_factory, owner: str, size: int) -> str:
    with session_factory() as session:
        job = job_store.create_job(session=session, owner=owner, params={}, upload_name="big.mp4",
                                   stored_name=f"{uuid.uuid4()}.mp4", upload_size=size, upload_sha256="0" * 64)
        session.commit()
        return job.id


def test_an_upload_past_the_storage_quota_is_413_before_its_body_is_read(make_client, settings, video_clip,
                                                                         session_factory, queued_tasks):
    client = make_client(max_storage_mb_per_owner=1)
    held = _hold_storage(session_factory, settings.owner, MIB - 1000)

    refused = _post_job(client, video_clip)

    assert refused.status_code == 413
    assert refused.json["error"]["code"] == "storage_quota_exceeded"
    assert "MAX_STORAGE_MB_PER_OWNER" in refused.json["error"]["message"]
    assert uploads(settings) == [] and queued_tasks() == []
    with session_factory() as session:  # an ended job's upload is removed (UPLOAD_RETENTION_DAYS 0): it no longer counts
        assert job_store.request_cancel(session=session, owner=settings.owner, job_id=held).status == "cancelled"
        session.commit()
    assert _post_job(client, video_clip).status_code == 202


def test_the_stored_size_is_checked_again_when_no_length_was_declared(settings, video_clip, session_factory,
                                                                      queued_tasks):
    """A chunked body declares no Content-Length: the quota is checked on the stored file, which is removed."""
    app = build_app(replace(settings, max_storage_mb_per_owner=1))
    _hold_storage(session_factory, settings.owner, MIB - video_clip.stat().st_size + 1)
    body, content_type = encode_multipart_formdata({"video": ("clip.mp4", video_clip.read_bytes(), "video/mp4")})
    try:
        with running_server(app) as base:
            response = requests.post(f"{base}/api/v1/jobs", data=iter([body[:1000], body[1000:]]),
                                     headers={"Content-Type": content_type}, timeout=30)
    finally:
        app.extensions["deepfake.db"]["engine"].dispose()

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "storage_quota_exceeded"
    assert uploads(settings) == [] and queued_tasks() == []


def test_the_storage_quota_counts_each_owner_apart(make_client, settings, video_clip, session_factory):
    client = make_client(max_storage_mb_per_owner=1)
    _hold_storage(session_factory, "someone-else", 10 * MIB)

    assert _post_job(client, video_clip).status_code == 202


def test_an_import_past_a_quota_creates_no_batch(make_client, settings, video_clip, tmp_path, session_factory):
    root = tmp_path / "imports"
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (root / name).write_bytes(video_clip.read_bytes())
    client = make_client(batch_import_root=root, max_active_jobs_per_owner=1)

    refused = client.post("/api/v1/batches", json={"name": "n", "import": {"folder": "."}})

    assert refused.status_code == 429 and refused.json["error"]["code"] == "too_many_active_jobs"
    assert client.get("/api/v1/batches").json["batches"] == []
    assert uploads(settings) == []
    assert job_count(session_factory) == 0


def test_the_openapi_document_declares_the_limits(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]

    for path in ("/api/v1/jobs", "/api/v1/batches", "/api/v1/batches/{batch_id}/items"):
        declared = paths[path]["post"]["responses"]
        assert {"413", "429"} <= set(declared), path
    assert "408" in paths["/api/v1/jobs"]["post"]["responses"]


# --- uploads in flight ------------------------------------------------------------------------------
def _start_stalled_upload(base: str, *, declared: int):
    """An upload whose headers (declaring `declared` bytes) and first bytes are sent, the rest withheld:
    the server is reading its body. Returns the open socket."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    boundary = "stalled-upload"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    sock.sendall((f"POST /api/v1/jobs HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {declared}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + head + b"\0" * 1000)
    return sock


def _in_flight(redis_url: str, app) -> int:
    """Reservations held in this test's deployment (its own queue base)."""
    from shared import lanes

    base = lanes.split_queue(app.config["ANALYSIS_QUEUE"])[0]
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(client.zcard(key) for key in client.scan_iter(f"deepfake:inflight:{base}:*"))
    finally:
        client.close()


@pytest.mark.parametrize("change, status, code", [
    ({"max_storage_mb_per_owner": 1}, 413, "storage_quota_exceeded"),
    ({"max_active_jobs_per_owner": 1}, 429, "too_many_active_jobs"),
])
def test_uploads_in_flight_count_against_the_quotas(settings, video_clip, redis_url, task_queue, queued_tasks,
                                                    change, status, code):
    """Found trying the limits as an attacker would: uploads sent in parallel were each checked against the
    same stored figures, so an owner could store many times MAX_STORAGE_MB_PER_OWNER (or queue past
    MAX_ACTIVE_JOBS_PER_OWNER) by not waiting for one upload to finish before starting the next."""
    from tests.conftest import wait_for

    app = build_app(replace(settings, **change))
    declared = MIB - video_clip.stat().st_size + 1  # alone it fits; with the clip it passes 1 MB
    try:
        with running_server(app) as base:
            stalled = _start_stalled_upload(base, declared=declared)
            try:
                wait_for(lambda: _in_flight(redis_url, app) == 1, timeout=15, what="the first upload's reservation")
                with open(video_clip, "rb") as video:
                    refused = requests.post(f"{base}/api/v1/jobs", files={"video": ("clip.mp4", video)}, timeout=30)
            finally:
                stalled.close()  # the first upload is abandoned: its reservation ends with its request
            assert refused.status_code == status, refused.text
            assert refused.json()["error"]["code"] == code
            assert "being uploaded" in refused.text or "in progress" in refused.text  # it says why
            wait_for(lambda: _in_flight(redis_url, app) == 0, timeout=30, what="the abandoned upload's reservation to end")
            with open(video_clip, "rb") as video:
                accepted = requests.post(f"{base}/api/v1/jobs", files={"video": ("clip.mp4", video)}, timeout=30)
            assert accepted.status_code == 202, accepted.text
    finally:
        app.extensions["deepfake.db"]["engine"].dispose()
    assert _in_flight(redis_url, app) == 0 and len(queued_tasks()) == 1
