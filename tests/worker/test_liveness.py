"""Workers announce themselves in Redis (shared.liveness): the web's /readyz reads who is alive."""
from __future__ import annotations

import signal

import pytest
import redis

from shared import liveness
from tests.conftest import wait_for
from worker.liveness import LivenessBeacon


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

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)

    assert liveness.alive_workers(redis_client, queue=queue) == []
