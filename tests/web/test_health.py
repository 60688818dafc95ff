"""/healthz always answers; /readyz checks the database, the broker, worker liveness and the weights for real,
and says what the live workers run from their heartbeats' reports (real Redis, no mocks)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from shared import liveness
from tests.web.conftest import build_app
from web.health import HAAR_NOTE

RETINAFACE = liveness.WorkerReport(device="cuda", detector="retinaface-mobilenet0.25",
                                   detector_weights="retinaface-mobilenet0.25.onnx", detector_note=None,
                                   checkpoints=("model_87_acc_20_frames_final_data.pt",))
HAAR = liveness.WorkerReport(device="cpu", detector="opencv", detector_weights=None,
                             detector_note="no RetinaFace weights in /weights on this worker: Haar fallback",
                             checkpoints=("model_87_acc_20_frames_final_data.pt",))


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
    """A worker from before the report: unknown, and the web machine's own files stand in, labelled so."""
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json == {"status": "ok",
                             "checks": {"database": "ok", "broker": "ok", "workers": "ok", "model": "ok"},
                             "workers": [{"name": "analysis@test", "device": "unknown",
                                          "detector": {"name": "unknown", "weights": []}, "checkpoints": None}],
                             "detector": {"name": "opencv", "weights": [], "note": HAAR_NOTE, "source": "web machine"},
                             "checkpoints": ["model_90_acc_20_frames_test.pt"],
                             "warnings": ["live workers that did not report their detector, device and checkpoints "
                                          "(an older version): analysis@test"]}


def _beat(redis_url: str, worker: str, queue: str, report: liveness.WorkerReport) -> None:
    client = redis.Redis.from_url(redis_url)
    liveness.beat(client, worker=worker, queues=[queue], report=report)
    client.close()


def test_a_worker_reporting_retinaface_is_what_readyz_says_though_the_web_has_no_weights(client, redis_url,
                                                                                         task_queue):
    _beat(redis_url, f"gpu@{task_queue}", task_queue, RETINAFACE)  # the web's WEIGHTS_DIR stays empty

    response = client.get("/readyz")

    assert response.status_code == 200 and response.json["checks"]["model"] == "ok"
    assert response.json["detector"] == {"name": "retinaface-mobilenet0.25", "source": "live workers",
                                         "weights": ["retinaface-mobilenet0.25.onnx"]}
    assert response.json["workers"] == [{"name": f"gpu@{task_queue}", "device": "cuda",
                                         "detector": {"name": "retinaface-mobilenet0.25",
                                                      "weights": ["retinaface-mobilenet0.25.onnx"]},
                                         "checkpoints": ["model_87_acc_20_frames_final_data.pt"]}]
    assert response.json["checkpoints"] == ["model_87_acc_20_frames_final_data.pt"]
    assert response.json["warnings"] == []


def test_a_live_worker_on_the_haar_fallback_is_a_warning_not_a_failure(client, redis_url, task_queue):
    _beat(redis_url, f"gpu@{task_queue}", task_queue, RETINAFACE)
    _beat(redis_url, f"cpu@{task_queue}", task_queue, HAAR)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json["detector"]["name"] == "mixed"
    assert [w["detector"]["name"] for w in response.json["workers"]] == ["opencv", "retinaface-mobilenet0.25"]
    [warning] = response.json["warnings"]
    assert "1 of 2 live workers" in warning and "Haar fallback" in warning and f"cpu@{task_queue}" in warning
    assert f"gpu@{task_queue}" not in warning


def test_readyz_is_not_ready_when_no_live_worker_has_a_checkpoint(client, settings, redis_url, task_queue):
    (settings.weights_dir / "model_90_acc_20_frames_test.pt").write_bytes(b"only on the web machine")
    _beat(redis_url, f"cpu@{task_queue}", task_queue, replace(HAAR, checkpoints=()))

    response = client.get("/readyz")

    assert response.status_code == 503 and response.json["error"]["down"] == ["model"]
    assert "no live worker has a model checkpoint" in response.json["checks"]["model"]
    assert response.json["detector"]["name"] == "opencv" and response.json["detector"]["source"] == "live workers"
    assert "Haar fallback" in response.json["warnings"][0]


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
