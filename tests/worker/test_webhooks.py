"""Completion webhooks through a real worker, Redis and database, to a real HTTP receiver on 127.0.0.1.

Signatures are checked with the `standardwebhooks` package (the scheme's reference implementation), not
with the code under test.
"""
from __future__ import annotations

import base64
import http.server
import json
import secrets
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Iterator

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from shared.db import batches as batch_store
from shared.db import jobs
from shared.db import webhooks as event_store
from shared.db.models import WebhookEvent
from shared.settings import Settings
from tests.conftest import settings_env, wait_for
from worker.context import worker_context
from worker.webhooks import announce_ended, deliver, retry_delay_s

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Receiver:
    """An HTTP server on 127.0.0.1 answering POSTs with the given statuses in turn (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/deepfake?source=test"

    def __enter__(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_settings(worker_settings: Settings) -> Settings:
    return replace(worker_settings, webhook_secret=SECRET, webhook_allow_private=True, webhook_retry_base_s=1,
                   webhook_batch_settle_s=0)


@pytest.fixture
def hook_env(hook_settings: Settings) -> dict[str, str]:
    return settings_env(hook_settings, WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOW_PRIVATE="1", WEBHOOK_RETRY_BASE_S="1",
                        WEBHOOK_BATCH_SETTLE_S="0")


@pytest.fixture
def receiver_500_500_200() -> Iterator[Receiver]:
    with Receiver([500, 500, 200]) as receiver:
        yield receiver


def _event(session_factory, event_id: str) -> WebhookEvent:
    with session_factory() as session:
        return session.get(WebhookEvent, event_id)


def _subscribe(session_factory, url: str, **subject: str) -> str:
    with session_factory() as session:
        event = event_store.subscribe(session=session, url=url, **subject)
        session.commit()
        return event.id


def _fail(session_factory, job_id: str) -> None:
    with session_factory() as session:
        jobs.claim_job(session=session, job_id=job_id, worker="test", stale_after_s=60)
        jobs.fail_job(session=session, job_id=job_id, code="no_decodable_frames", message="nothing to decode")


def test_a_job_s_webhook_is_retried_with_the_same_id_until_a_2xx_then_never_again(
        hook_settings, hook_env, queue_job, send_analyze, start_worker, db_session_factory, receiver_500_500_200):
    receiver = receiver_500_500_200
    job_id = queue_job(None)  # no upload stored: the job fails, which ends it as well as success would
    event_id = _subscribe(db_session_factory, receiver.url, job_id=job_id)
    start_worker(hook_settings, env=hook_env)
    send_analyze(job_id)

    event = wait_for(lambda: (e := _event(db_session_factory, event_id)).delivered_at and e, timeout=180,
                     what="the webhook to be delivered")

    assert event.attempts == 3 and event.last_error is None and event.next_attempt_at is None
    assert len(receiver.requests) == 3
    assert {headers["webhook-id"] for headers, _ in receiver.requests} == {event_id}
    verifier = Webhook(SECRET)
    payloads = [verifier.verify(body, headers) for headers, body in receiver.requests]
    assert payloads[0] == payloads[1] == payloads[2]
    assert payloads[0]["type"] == "job.completed"
    data = payloads[0]["data"]
    assert data["id"] == job_id and data["status"] == "failed" and data["verdict"] is None
    assert data["error"]["code"] == "video_not_found"
    assert data["links"]["self"] == f"/api/v1/jobs/{job_id}"
    with pytest.raises(Exception):  # a wrong secret fails: the check above is not vacuous
        Webhook("whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()).verify(
            receiver.requests[0][1], receiver.requests[0][0])
    assert all(headers["host"] == receiver.url.split("/")[2] for headers, _ in receiver.requests)


def test_a_batch_s_webhook_fires_once_when_its_last_item_ends(
        hook_settings, hook_env, start_worker, db_session_factory):
    with Receiver([204]) as receiver:
        with db_session_factory() as session:
            batch = batch_store.create_batch(session=session, owner="local", name="night", params={})
            items = [batch_store.add_item(session=session, batch=batch, upload_name=f"{n}.mp4", stored_name=f"{n}.mp4",
                                          upload_size=1, upload_sha256="0" * 64, lane="batch").id for n in "ab"]
            event = event_store.subscribe(session=session, url=receiver.url, batch_id=batch.id)
            session.commit()
            batch_id, event_id = batch.id, event.id
        start_worker(hook_settings, env=hook_env)
        context = worker_context(hook_settings)

        _fail(db_session_factory, items[0])
        assert announce_ended(items[0], context=context) == []
        assert _event(db_session_factory, event_id).payload is None  # one item still queued

        _fail(db_session_factory, items[1])
        announce_ended(items[1], context=context)
        announce_ended(items[1], context=context)  # a duplicate announcement arms nothing more

        delivered = wait_for(lambda: (e := _event(db_session_factory, event_id)).delivered_at and e, timeout=120,
                             what="the batch webhook to be delivered")
        assert delivered.attempts == 1
        [(headers, body)] = receiver.requests
        payload = Webhook(SECRET).verify(body, headers)
        assert payload["type"] == "batch.completed"
        assert payload["data"]["id"] == batch_id and payload["data"]["counts"] == {"failed": 2}


def test_delivery_checks_the_address_again_and_gives_up_after_the_last_attempt(
        hook_settings, db_session_factory, make_ended_job):
    with Receiver([500]) as receiver:
        settings = replace(hook_settings, webhook_allow_private=False, webhook_max_attempts=2)
        event_id = make_ended_job(receiver.url)
        context = worker_context(settings)

        assert deliver(event_id, context=context) == retry_delay_s(1, base_s=1)
        assert "127.0.0.1" in _event(db_session_factory, event_id).last_error
        assert receiver.requests == []  # refused before connecting: loopback is not allowed here

        with db_session_factory() as session:  # due now
            event_store.record_failure(session=session, event_id=event_id, attempt=1, error="x",
                                       retry_at=_event(db_session_factory, event_id).created_at)
        context = worker_context(replace(settings, webhook_allow_private=True))
        assert deliver(event_id, context=context) is None  # attempt 2 of 2 failed: given up
        event = _event(db_session_factory, event_id)
        assert event.attempts == 2 and event.delivered_at is None and event.next_attempt_at is None
        assert event.last_error == "the receiver answered HTTP 500" and len(receiver.requests) == 1
        assert deliver(event_id, context=context) is None and len(receiver.requests) == 1


@pytest.fixture
def make_ended_job(queue_job, db_session_factory):
    def make(url: str) -> str:
        job_id = queue_job(None)
        event_id = _subscribe(db_session_factory, url, job_id=job_id)
        _fail(db_session_factory, job_id)
        with db_session_factory() as session:
            assert event_store.arm_job(session=session, job_id=job_id) == [event_id]
            session.commit()
        return event_id

    return make


def test_the_backoff_doubles_from_its_base():
    assert [retry_delay_s(n, base_s=5) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert sum(retry_delay_s(n, base_s=5) for n in range(1, 15)) / 3600 == pytest.approx(22.75, abs=0.01)


def test_the_body_is_the_payload_as_json(hook_settings, db_session_factory, make_ended_job):
    with Receiver([200]) as receiver:
        event_id = make_ended_job(receiver.url)
        assert deliver(event_id, context=worker_context(hook_settings)) is None
        [(headers, body)] = receiver.requests
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == _event(db_session_factory, event_id).payload
        with db_session_factory() as session:
            assert session.scalars(select(WebhookEvent.delivered_at)).one() is not None


def test_a_worker_without_the_secret_records_why_and_sends_nothing(hook_settings, db_session_factory, make_ended_job):
    with Receiver([200]) as receiver:
        event_id = make_ended_job(receiver.url)
        assert deliver(event_id, context=worker_context(replace(hook_settings, webhook_secret=None))) == 1
        assert "WEBHOOK_SECRET" in _event(db_session_factory, event_id).last_error
        assert receiver.requests == []


def _front_queue_events(settings: Settings) -> list[str]:
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    try:
        raw = client.lrange(f"{settings.worker_queues[0]}.front", 0, -1)
    finally:
        client.close()
    messages = [json.loads(item) for item in raw]
    return [json.loads(base64.b64decode(m["body"]))[0][0] for m in messages
            if m["headers"]["task"] == "deepfake.deliver_webhook"]


def test_the_reaper_s_pass_sends_unannounced_and_overdue_events_once(hook_settings, queue_job, db_session_factory):
    from celery import Celery

    from worker.webhooks import resend_due

    cancelled = queue_job(None)
    cancelled_event = _subscribe(db_session_factory, "http://127.0.0.1:9/x", job_id=cancelled)
    with db_session_factory() as session:  # the web's cancel of a queued job does not announce it
        jobs.request_cancel(session=session, owner="local", job_id=cancelled)
        session.commit()
    lost_job = queue_job(None)
    lost_event = _subscribe(db_session_factory, "http://127.0.0.1:9/x", job_id=lost_job)
    _fail(db_session_factory, lost_job)
    with db_session_factory() as session:  # armed, but its message never arrived: overdue
        event_store.arm_job(session=session, job_id=lost_job)
        session.commit()
        session.get(WebhookEvent, lost_event).next_attempt_at -= timedelta(seconds=hook_settings.requeue_lost_after_s + 1)
        session.commit()
    client = Celery("test-reaper", broker=hook_settings.redis_url, set_as_current=False)
    try:
        sent = resend_due(app=client, session_factory=db_session_factory, settings=hook_settings)
        again = resend_due(app=client, session_factory=db_session_factory, settings=hook_settings)
    finally:
        client.close()

    assert sorted(sent) == sorted([cancelled_event, lost_event]) and again == []
    assert sorted(_front_queue_events(hook_settings)) == sorted(sent)
    assert _event(db_session_factory, cancelled_event).payload["data"]["status"] == "cancelled"
