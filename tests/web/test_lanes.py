"""The web's side of the queue lanes, on the real Redis and database: which lane a job gets, which queue
its message goes to, and what /metrics says about every lane's queue."""
from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Iterator

import pytest
import redis
from flask import Flask

from cli.service import free_port
from shared import lanes, liveness
from shared.db import jobs as job_store
from shared.db.models import Job
from tests.web.conftest import build_app
from tests.web.test_metrics import parse, sample
from web.queue import EnqueueError, choose_lane, enqueue_analysis


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_app(settings) -> Iterator:
    """The app with some settings changed (the 2-s test clip counts as long from 1 s)."""
    built: list[Flask] = []

    def make(**changes) -> Flask:
        built.append(build_app(replace(settings, **changes)))
        return built[-1]

    yield make
    for app in built:
        app.extensions["deepfake.db"]["engine"].dispose()


def _queued(client: redis.Redis, queue: str) -> list[str]:
    return [json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0] for raw in client.lrange(queue, 0, -1)]


def _post(app: Flask, video) -> dict:
    with open(video, "rb") as file:
        response = app.test_client().post("/api/v1/jobs", data={"video": (file, "clip.mp4")})
    assert response.status_code == 202, response.json
    return response.json


def _lane(app: Flask, job_id: str) -> str:
    with app.extensions["deepfake.db"]["session_factory"]() as session:
        return session.get(Job, job_id).lane


def _gpu_worker_beats(client: redis.Redis, base: str) -> None:
    liveness.beat(client, worker="gpu@test", queues=lanes.default_worker_queues(base=base, gpu=True))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_long_upload_stays_interactive_while_no_gpu_worker_is_alive(make_app, video_clip, redis_client, task_queue):
    app = make_app(gpu_lane_min_duration_s=1)
    liveness.beat(redis_client, worker="cpu@test", queues=lanes.default_worker_queues(base=task_queue))

    job = _post(app, video_clip)

    assert _lane(app, job["id"]) == lanes.INTERACTIVE
    assert _queued(redis_client, task_queue) == [job["id"]]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_long_upload_goes_to_the_gpu_lane_while_a_gpu_worker_beats(make_app, video_clip, redis_client, task_queue):
    _gpu_worker_beats(redis_client, task_queue)
    long_app, default_app = make_app(gpu_lane_min_duration_s=1), make_app()

    long_job, short_job = _post(long_app, video_clip), _post(default_app, video_clip)

    assert (_lane(long_app, long_job["id"]), _lane(default_app, short_job["id"])) == (lanes.GPU, lanes.INTERACTIVE)
    assert _queued(redis_client, f"{task_queue}.gpu") == [long_job["id"]]
    assert _queued(redis_client, task_queue) == [short_job["id"]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_batch_items_stay_in_the_batch_lane_unless_long_with_a_gpu_worker_alive(make_app, redis_client, task_queue):
    app = make_app(gpu_lane_min_duration_s=600)
    with app.app_context():
        assert choose_lane(duration_s=None, batch=True) == lanes.BATCH
        assert choose_lane(duration_s=3600, batch=True) == lanes.BATCH
        assert choose_lane(duration_s=3600, batch=False) == lanes.INTERACTIVE
        _gpu_worker_beats(redis_client, task_queue)
        assert choose_lane(duration_s=599.9, batch=True) == lanes.BATCH
        assert choose_lane(duration_s=600, batch=True) == lanes.GPU
        assert choose_lane(duration_s=None, batch=False) == lanes.INTERACTIVE
        liveness.leave(redis_client, worker="gpu@test", queues=[f"{task_queue}.gpu"])
        assert choose_lane(duration_s=600, batch=True) == lanes.BATCH


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unreachable_redis_means_no_gpu_worker_and_enqueueing_fails_as_before(make_app):
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0", gpu_lane_min_duration_s=1)  # nothing listens
    with app.app_context():
        assert choose_lane(duration_s=3600, batch=False) == lanes.INTERACTIVE
        with pytest.raises(EnqueueError):
            enqueue_analysis("a-job", lane=lanes.BATCH)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_lane_has_its_own_queue_named_from_the_web_s_queue(app, redis_client, task_queue):
    with app.app_context():
        for lane in lanes.LANES:
            enqueue_analysis(f"job-{lane}", lane=lane)
        enqueue_analysis("job-default")
        with pytest.raises(lanes.UnknownLaneError):
            enqueue_analysis("job-nowhere", lane="express")

    assert _queued(redis_client, task_queue) == ["job-default", "job-interactive"]  # newest first
    assert _queued(redis_client, f"{task_queue}.batch") == ["job-batch"]
    assert _queued(redis_client, f"{task_queue}.gpu") == ["job-gpu"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_metrics_report_every_lane_s_queue_its_workers_and_its_jobs(app, client, session_factory, redis_client,
                                                                    task_queue):
    _gpu_worker_beats(redis_client, task_queue)
    with session_factory() as session:
        for lane in (lanes.GPU, lanes.GPU, lanes.BATCH):
            job_store.create_job(session=session, owner="local", params={}, upload_name="clip.mp4",
                                 stored_name="clip.bin", upload_size=1, upload_sha256="0" * 64, lane=lane)
        session.commit()
    with app.app_context():
        enqueue_analysis("job-batch", lane=lanes.BATCH)
    redis_client.lpush(f"{task_queue}.gpu.front", b"{}")

    samples = parse(client.get("/metrics").get_data(as_text=True))

    for queue, depth in ((task_queue, 0), (f"{task_queue}.batch", 1), (f"{task_queue}.gpu", 0),
                         (f"{task_queue}.front", 0), (f"{task_queue}.batch.front", 0),
                         (f"{task_queue}.gpu.front", 1)):
        assert sample(samples, "deepfake_queue_messages", queue=queue) == depth, queue
    for queue in (task_queue, f"{task_queue}.batch", f"{task_queue}.gpu"):
        assert sample(samples, "deepfake_workers_alive", queue=queue) == 1, queue
        assert sample(samples, "deepfake_worker_heartbeat_age_seconds", worker="gpu@test", queue=queue) >= 0
    assert sample(samples, "deepfake_lane_jobs", status="queued", lane="gpu") == 2
    assert sample(samples, "deepfake_lane_jobs", status="queued", lane="batch") == 1
    assert ("deepfake_lane_jobs", frozenset({("status", "queued"), ("lane", "interactive")})) not in samples
