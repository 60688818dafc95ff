"""/metrics in the Prometheus text format, checked against jobs written to the test's database."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from shared import liveness
from shared.db.metrics import RECENT_S
from shared.db.models import Job, utcnow
from tests.web.conftest import build_app

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, labels): value} of every sample; checks that each family is declared before its samples."""
    declared, samples = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            name = match["name"]
            assert re.sub(r"_(bucket|sum|count)$", "", name) in declared or name in declared, line
            labels = frozenset(LABEL.findall(match["labels"] or ""))
            samples[(name, labels)] = float(match["value"])
    return samples


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_metrics_report_jobs_queue_durations_frames_and_workers(client, make_job, advance_job, session_factory,
                                                                redis_client, task_queue):
    oldest = make_job()
    make_job()
    advance_job(make_job(), "running")
    for _ in range(2):
        advance_job(make_job(), "succeeded")
    advance_job(make_job(), "failed")
    with session_factory() as session:
        session.execute(update(Job).where(Job.id == oldest).values(created_at=utcnow() - timedelta(seconds=120)))
        session.commit()
    redis_client.lpush(task_queue, b"{}")
    liveness.beat(redis_client, worker="analysis@host", queues=[task_queue])
    # A worker last heard from 40 s ago (Redis's own clock): reported with its age, not counted alive.
    silent_since = liveness.redis_now(redis_client) - 40
    redis_client.zadd(liveness.workers_key(task_queue), {"silent@host": silent_since})

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    samples = parse(response.get_data(as_text=True))
    assert {status: sample(samples, "deepfake_jobs", status=status) for status in ("queued", "running")} \
        == {"queued": 2, "running": 1}
    assert {status: sample(samples, "deepfake_recent_jobs", status=status)
            for status in ("succeeded", "failed", "cancelled")} == {"succeeded": 2, "failed": 1, "cancelled": 0}
    # Exact ages at a fixed time are tested in tests/shared/db/test_metrics.py; here, that they are reported.
    assert sample(samples, "deepfake_oldest_queued_job_age_seconds") >= 120
    assert sample(samples, "deepfake_running_job_heartbeat_age_seconds", worker="test-worker") >= 0
    assert sample(samples, "deepfake_recent_frames_analysed") == 40  # two jobs of 20 frames
    assert sample(samples, "deepfake_recent_frames_per_second") > 0
    assert sample(samples, "deepfake_recent_job_duration_seconds_count") == 2
    assert sample(samples, "deepfake_recent_job_duration_seconds_bucket", le="1") == 2  # both ended at once
    assert sample(samples, "deepfake_recent_job_duration_seconds_bucket", le="+Inf") == 2
    assert sample(samples, "deepfake_broker_up") == 1
    assert sample(samples, "deepfake_queue_messages", queue=task_queue) == 1
    assert sample(samples, "deepfake_queue_messages", queue=f"{task_queue}.front") == 0
    assert sample(samples, "deepfake_workers_alive", queue=task_queue) == 1
    assert sample(samples, "deepfake_worker_heartbeat_age_seconds", worker="analysis@host", queue=task_queue) >= 0
    assert sample(samples, "deepfake_worker_heartbeat_age_seconds", worker="silent@host", queue=task_queue) >= 40


def test_metrics_of_an_empty_service(client, task_queue):
    samples = parse(client.get("/metrics").get_data(as_text=True))

    assert sample(samples, "deepfake_jobs", status="queued") == 0
    assert sample(samples, "deepfake_oldest_queued_job_age_seconds") == 0
    assert sample(samples, "deepfake_recent_job_duration_seconds_count") == 0
    assert sample(samples, "deepfake_workers_alive", queue=task_queue) == 0


def test_metrics_still_answer_when_redis_does_not(settings):
    app = build_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))

    samples = parse(app.test_client().get("/metrics").get_data(as_text=True))

    assert sample(samples, "deepfake_broker_up") == 0
    assert ("deepfake_jobs", frozenset({("status", "queued")})) in samples


def test_ended_jobs_older_than_the_recent_window_are_left_out(client, make_job, advance_job, session_factory):
    advance_job(make_job(), "succeeded")
    with session_factory() as session:
        session.execute(update(Job).values(created_at=utcnow() - timedelta(seconds=RECENT_S + 60)))
        session.commit()

    samples = parse(client.get("/metrics").get_data(as_text=True))

    assert sample(samples, "deepfake_recent_jobs", status="succeeded") == 0
    assert sample(samples, "deepfake_recent_frames_analysed") == 0
