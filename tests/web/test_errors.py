"""Every error status is JSON under /api/ ({"error": {"code", "message"}}); pages get an error page."""
from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from sqlalchemy import text

from cli.service import free_port

from tests.web.conftest import build_app, job_count, uploads

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


def _assert_error(response, status, code):
    assert response.status_code == status
    assert response.is_json
    assert response.json["error"]["code"] == code
    assert isinstance(response.json["error"]["message"], str) and response.json["error"]["message"]


def test_unknown_api_path_is_404_json(client):
    _assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_json_with_allow(client):
    response = client.delete("/api/v1/jobs")

    _assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_unknown_page_is_an_html_404(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "not_found" in response.text


@pytest.fixture
def small_app(settings):
    app = build_app(replace(settings, max_upload_mb=1))
    yield app
    app.extensions["deepfake.db"]["engine"].dispose()


def test_upload_over_the_cap_is_413_and_the_partial_file_is_deleted(small_app, settings, tmp_path, queued_tasks):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (1024 * 1024 + 1))

    with open(big, "rb") as video:
        response = small_app.test_client().post("/api/v1/jobs", data={"video": (video, "big.mp4")})

    _assert_error(response, 413, "upload_too_large")
    assert "limit of 1 MB" in response.json["error"]["message"]
    assert uploads(settings) == []
    assert queued_tasks() == []


def test_upload_over_the_cap_without_content_length_is_413(small_app, settings):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"\0" * (3 * 1024 * 1024) \
        + f"\r\n--{boundary}--\r\n".encode()
    import io

    # A chunked request: the server knows no length up front, only the stream's end.
    response = small_app.test_client().post(
        "/api/v1/jobs", input_stream=io.BytesIO(body), content_type=f"multipart/form-data; boundary={boundary}",
        environ_overrides={"wsgi.input_terminated": True})

    _assert_error(response, 413, "upload_too_large")
    assert uploads(settings) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL's typed columns refuse the row
def test_unexpected_failure_is_500_json_without_traceback(session_factory, make_job, client, caplog):
    job_id = make_job()
    with session_factory() as session:  # a row the app cannot read back: a bug, not an outage
        session.execute(text("UPDATE jobs SET created_at = 'not a time' WHERE id = :id"), {"id": job_id})
        session.commit()

    with caplog.at_level(logging.ERROR, logger="web.errors"):
        response = client.get("/api/v1/jobs")

    _assert_error(response, 500, "internal_error")
    assert "Traceback" not in response.text and "sqlite" not in response.text.lower()
    assert any("unhandled error on GET /api/v1/jobs" in r.getMessage() and r.exc_info for r in caplog.records)


CLOSED_PORT_POSTGRES = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
UNREACHABLE_DATABASES = {"sqlite": "sqlite:////nonexistent-dir/for/sure/jobs.db", "postgresql": CLOSED_PORT_POSTGRES}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("unreachable", sorted(UNREACHABLE_DATABASES))
def test_every_endpoint_answers_503_with_retry_after_while_the_database_is_unreachable(
        settings, video_clip, unreachable, queued_tasks):
    app = build_app(replace(settings, database_url=UNREACHABLE_DATABASES[unreachable]))
    client = app.test_client()
    job = "/api/v1/jobs/00000000-0000-4000-8000-000000000000"
    with open(video_clip, "rb") as video:
        responses = {
            "submit": client.post("/api/v1/jobs", data={"video": (video, "clip.mp4")}),
            "list": client.get("/api/v1/jobs"), "get": client.get(job), "cancel": client.post(f"{job}/cancel"),
            "artifacts": client.get(f"{job}/artifacts"), "artifact": client.get(f"{job}/artifacts/a.png"),
        }
    pages = {"page": client.get(job.replace("/api/v1", "")), "page list": client.get("/jobs")}
    app.extensions["deepfake.db"]["engine"].dispose()

    for name, response in responses.items():
        _assert_error(response, 503, "database_unavailable")
        assert int(response.headers["Retry-After"]) > 0, name
    for name, response in pages.items():
        assert (response.status_code, response.mimetype) == (503, "text/html"), name
        assert "database_unavailable" in response.text and int(response.headers["Retry-After"]) > 0
    assert uploads(settings) == [] and queued_tasks() == []


def test_submit_while_the_broker_is_down_is_503_and_withdrawn(settings, video_clip, session_factory):
    app = build_app(replace(settings, redis_url=CLOSED_PORT_REDIS))

    with open(video_clip, "rb") as video:
        response = app.test_client().post("/api/v1/jobs", data={"video": (video, "clip.mp4")})

    _assert_error(response, 503, "queue_unavailable")
    assert uploads(settings) == []
    assert job_count(session_factory) == 0
