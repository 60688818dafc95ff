"""webhook_url on POST /api/v1/jobs and POST /api/v1/batches: checked at submission, recorded with the job or
batch; refused with 422 (and nothing stored or queued) when the server cannot sign or the URL is not callable."""
from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from shared.db.models import Batch, WebhookEvent
from shared.webhooks import WebhookUrlError, check_url, is_public
from tests.web.conftest import build_app, job_count, uploads

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
REFUSED = [
    "http://127.0.0.1/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://localhost:8080/hook",  # a name: refused for what it resolves to
    "https://user:secret@hooks.example.com/hook",
    "ftp://hooks.example.com/hook",
    "javascript:alert(1)",
    "https://hooks.example.com/" + "a" * 2100,
    "https://hooks.example.com/a b",
]


@pytest.fixture
def hook_app(settings):
    app = build_app(replace(settings, webhook_secret=SECRET))
    yield app
    app.extensions["deepfake.db"]["engine"].dispose()


def _post(client, path, **fields):
    with open(path, "rb") as video:
        return client.post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **fields})


def _events(app) -> list[WebhookEvent]:
    with app.extensions["deepfake.db"]["session_factory"]() as session:
        return list(session.scalars(select(WebhookEvent)))


@pytest.mark.parametrize("url", REFUSED)
def test_a_url_the_service_will_not_call_is_refused_and_nothing_is_kept(hook_app, settings, video_clip, url,
                                                                        queued_tasks):
    response = _post(hook_app.test_client(), video_clip, webhook_url=url)

    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "invalid_webhook_url"
    assert "webhook_url" in response.json["error"]["message"]
    session_factory = hook_app.extensions["deepfake.db"]["session_factory"]
    assert job_count(session_factory) == 0 and _events(hook_app) == []
    assert uploads(settings) == [] and queued_tasks() == []


def test_without_a_secret_webhooks_are_refused_as_disabled(client, video_clip, queued_tasks, session_factory):
    response = _post(client, video_clip, webhook_url="https://hooks.example.com/x")

    assert response.status_code == 422
    assert response.json["error"]["code"] == "webhooks_disabled"
    assert "WEBHOOK_SECRET" in response.json["error"]["message"]
    assert job_count(session_factory) == 0 and queued_tasks() == []


def test_a_public_url_is_recorded_with_the_job(hook_app, video_clip, queued_tasks):
    response = _post(hook_app.test_client(), video_clip, webhook_url="https://93.184.215.14:8443/hooks?x=1")

    assert response.status_code == 202, response.json
    [event] = _events(hook_app)
    assert event.job_id == response.json["id"] and event.batch_id is None
    assert event.url == "https://93.184.215.14:8443/hooks?x=1"
    assert event.payload is None and event.attempts == 0 and event.delivered_at is None
    assert queued_tasks() == [("deepfake.analyze_job", [response.json["id"]])]


def test_private_addresses_are_allowed_when_the_operator_says_so(settings, video_clip):
    app = build_app(replace(settings, webhook_secret=SECRET, webhook_allow_private=True))
    try:
        response = _post(app.test_client(), video_clip, webhook_url="http://localhost:9999/hook")
        assert response.status_code == 202, response.json
        assert [event.url for event in _events(app)] == ["http://localhost:9999/hook"]
        refused = _post(app.test_client(), video_clip, webhook_url="ftp://localhost/hook")
        assert refused.json["error"]["code"] == "invalid_webhook_url"
    finally:
        app.extensions["deepfake.db"]["engine"].dispose()


def test_a_batch_records_its_webhook_and_refuses_a_bad_one_before_it_exists(hook_app):
    client = hook_app.test_client()
    refused = client.post("/api/v1/batches", json={"name": "n", "webhook_url": "http://10.0.0.1/x"})
    assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_webhook_url"
    with hook_app.extensions["deepfake.db"]["session_factory"]() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 0

    created = client.post("/api/v1/batches", json={"name": "n", "webhook_url": "https://93.184.215.14/x"})

    assert created.status_code == 201, created.json
    [event] = _events(hook_app)
    assert event.batch_id == created.json["id"] and event.job_id is None


def test_the_openapi_document_declares_the_field(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    upload = paths["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    batch = paths["/api/v1/batches"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert upload["properties"]["webhook_url"]["maxLength"] == 2048
    assert batch["properties"]["webhook_url"]["type"] == ["string", "null"]
    # What the document allows, the server takes: null is "no webhook".
    created = client.post("/api/v1/batches", json={"name": "n", "webhook_url": None})
    assert created.status_code == 201, created.json


@pytest.mark.parametrize("address, public", [
    ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.0.1", False), ("100.64.0.1", False),
    ("169.254.1.1", False), ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:10.0.0.1", False),
    ("2002:7f00:1::", False), ("240.0.0.1", False), ("ff02::1", False),
    ("93.184.215.14", True), ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
])
def test_which_addresses_count_as_public(address, public):
    assert is_public(address) is public


def test_every_address_a_name_resolves_to_is_checked():
    resolve = lambda host, port: ["93.184.215.14", "10.0.0.7"]  # noqa: E731 (one public, one private)
    with pytest.raises(WebhookUrlError, match="10.0.0.7"):
        check_url("https://hooks.example.com/x", allow_private=False, resolve=resolve)
    target = check_url("https://hooks.example.com:8443/x?y=1", allow_private=True, resolve=resolve)
    assert target.addresses == ("93.184.215.14", "10.0.0.7")
    assert (target.host_header, target.path) == ("hooks.example.com:8443", "/x?y=1")


def _front_queue_events(redis_url: str, task_queue: str) -> list[str]:
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(raw) for raw in client.lrange(f"{task_queue}.front", 0, -1)]
    finally:
        client.close()
    return [m["headers"]["argsrepr"] for m in messages if m["headers"]["task"] == "deepfake.deliver_webhook"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_job_cancelled_while_queued_sends_its_webhook_at_once(settings, video_clip, redis_url, task_queue):
    """No worker sees a queued job end when the web cancels it: the web arms and sends its event itself."""
    app = build_app(replace(settings, webhook_secret=SECRET, webhook_allow_private=True))
    client = app.test_client()
    job_id = _post(client, video_clip, webhook_url="http://127.0.0.1:9/hook").json["id"]
    assert _front_queue_events(redis_url, task_queue) == []

    assert client.post(f"/api/v1/jobs/{job_id}/cancel").json["status"] == "cancelled"

    [event] = _events(app)
    assert event.job_id == job_id and event.payload is not None and event.payload["data"]["status"] == "cancelled"
    assert _front_queue_events(redis_url, task_queue) == [repr([event.id])]
    client.post(f"/api/v1/jobs/{job_id}/cancel")  # again: already ended, nothing armed or sent twice
    assert len(_front_queue_events(redis_url, task_queue)) == 1
    app.extensions["deepfake.db"]["engine"].dispose()
