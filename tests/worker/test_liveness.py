"""Workers announce themselves in Redis (shared.liveness): the web's /readyz reads who is alive and what runs."""
from __future__ import annotations

import signal
from dataclasses import replace

import pytest
import redis

from shared import liveness
from tests.conftest import wait_for
from worker.liveness import LivenessBeacon, describe_worker


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_a_beacon_is_alive_while_it_runs_and_gone_once_stopped(redis_url, redis_client, task_queue):
    beacon = LivenessBeacon(redis_url=redis_url, worker="analysis@here", queues=[task_queue])
    beacon.start()
    try:
        wait_for(lambda: liveness.alive_workers(redis_client, queue=task_queue), timeout=5, what="the first beat")
        assert liveness.alive_workers(redis_client, queue=task_queue) == ["analysis@here"]
    finally:
        beacon.stop()

    assert liveness.alive_workers(redis_client, queue=task_queue) == []


def test_a_beacon_carries_its_report_and_takes_it_away_when_stopped(redis_url, redis_client, task_queue):
    worker = f"analysis@{task_queue}"
    report = liveness.WorkerReport(device="cpu", detector="opencv", detector_weights=None, detector_note="why",
                                   checkpoints=("a.pt",))
    beacon = LivenessBeacon(redis_url=redis_url, worker=worker, queues=[task_queue], report=report)
    beacon.start()
    try:
        wait_for(lambda: liveness.alive_workers(redis_client, queue=task_queue), timeout=5, what="the first beat")
        assert liveness.worker_reports(redis_client, workers=[worker]) == {worker: report}
    finally:
        beacon.stop()

    assert liveness.worker_reports(redis_client, workers=[worker]) == {worker: None}


def test_a_worker_without_a_report_or_with_another_version_reads_as_unknown(redis_client, task_queue):
    liveness.beat(redis_client, worker=f"old@{task_queue}", queues=[task_queue])
    redis_client.set(liveness.report_key(f"next@{task_queue}"), '{"version": 99, "device": "tpu"}')

    reports = liveness.worker_reports(redis_client, workers=[f"old@{task_queue}", f"next@{task_queue}"])

    assert reports == {f"old@{task_queue}": None, f"next@{task_queue}": None}


def test_the_report_names_the_retinaface_file_the_engine_would_load(settings):
    for name in ("mobilenet0.25_Final.pth", "Resnet50_Final.pth", "model_87_acc_20_frames_final_data.pt"):
        (settings.weights_dir / name).write_bytes(b"not loaded")

    on_cpu = describe_worker(settings)
    on_gpu = describe_worker(replace(settings, device="cuda"))

    assert (on_cpu.device, on_cpu.detector, on_cpu.detector_weights) == ("cpu", "retinaface-mobilenet0.25",
                                                                         "mobilenet0.25_Final.pth")
    assert (on_gpu.device, on_gpu.detector, on_gpu.detector_weights) == ("cuda", "retinaface-resnet50",
                                                                         "Resnet50_Final.pth")
    assert on_cpu.checkpoints == ("model_87_acc_20_frames_final_data.pt",) and on_cpu.detector_note is None


def test_without_retinaface_weights_the_report_says_haar_fallback_and_why(settings):
    report = describe_worker(settings)

    assert report.detector == "opencv" and report.detector_weights is None and report.checkpoints == ()
    assert str(settings.weights_dir) in report.detector_note and "Haar" in report.detector_note


def test_heartbeat_ages_count_from_the_last_beat(redis_client, task_queue):
    liveness.beat(redis_client, worker="w@a", queues=[task_queue])
    old = liveness.redis_now(redis_client) - liveness.ALIVE_FOR_S - 5
    redis_client.zadd(liveness.workers_key(task_queue), {"w@b": old})

    ages = liveness.heartbeat_ages(redis_client, queue=task_queue)

    assert ages["w@a"] < 1.0 and ages["w@b"] == pytest.approx(liveness.ALIVE_FOR_S + 5, abs=1.0)
    assert liveness.alive_workers(redis_client, queue=task_queue) == ["w@a"]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_worker_is_alive_once_ready_and_leaves_on_sigterm(worker_settings, start_worker, redis_client):
    queue = worker_settings.worker_queues[0]
    process = start_worker(worker_settings)
    alive = wait_for(lambda: liveness.alive_workers(redis_client, queue=queue), timeout=60, what="the worker's beat")
    assert len(alive) == 1 and alive[0].startswith("w1-")
    report = liveness.worker_reports(redis_client, workers=alive)[alive[0]]
    assert report is not None and report.device == worker_settings.device

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)

    assert liveness.alive_workers(redis_client, queue=queue) == []
