"""/healthz always answers; /readyz checks the database, the broker, worker liveness and the weights for real."""
from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from shared import liveness
from tests.web.conftest import build_app
from web.health import HAAR_NOTE


@pytest.fixture
def ready_service(settings, redis_url, task_queue):
    """A worker beat on the test's queue and a seed-named checkpoint file in WEIGHTS_DIR."""
    (settings.weights_dir / "model_90_acc_20_frames_test.pt").write_bytes(b"not loaded by the web")
    client = redis.Redis.from_url(redis_url)
    liveness.beat(client, worker="analysis@test", queues=[task_queue])
    yield client
    client.close()


def test_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_when_everything_answers_and_a_worker_is_alive(client, ready_service):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json == {"status": "ok",
                             "checks": {"database": "ok", "broker": "ok", "workers": "ok", "model": "ok"},
                             "detector": {"name": "opencv", "weights": [], "note": HAAR_NOTE},
                             "checkpoints": ["model_90_acc_20_frames_test.pt"]}


def test_readyz_fails_without_a_worker_or_a_checkpoint(client, settings, task_queue):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json["error"]["down"] == ["model", "workers"]
    assert task_queue in response.json["checks"]["workers"]
    assert "weights/README.md" in response.json["checks"]["model"]


def test_readyz_drops_when_the_last_worker_leaves(client, ready_service, task_queue):
    liveness.leave(ready_service, worker="analysis@test", queues=[task_queue])

    response = client.get("/readyz")

    assert response.status_code == 503 and response.json["error"]["down"] == ["workers"]


def test_a_worker_silent_for_longer_than_the_liveness_window_is_not_alive(client, ready_service, task_queue):
    stale = liveness.redis_now(ready_service) - liveness.ALIVE_FOR_S - 1
    ready_service.zadd(liveness.workers_key(task_queue), {"analysis@test": stale})

    assert client.get("/readyz").json["error"]["down"] == ["workers"]


def test_readyz_names_redis_when_it_is_unreachable(settings):
    app = build_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["error"]["code"] == "not_ready"
    assert response.json["error"]["down"] == ["broker", "model", "workers"]
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["workers"] == "unknown (broker unreachable)"


def test_readyz_names_the_database_when_it_is_unreachable(settings, ready_service):
    app = build_app(replace(settings, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none"))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["error"]["down"] == ["database"]
    assert "database" in response.json["error"]["message"]
