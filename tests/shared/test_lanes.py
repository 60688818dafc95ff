"""Lane names, their queues, and the order a worker polls them in (shared.lanes, shared.settings)."""
from __future__ import annotations

import pytest

from shared import lanes
from shared.settings import Settings


def test_each_lane_has_its_queue_named_from_one_base_and_the_interactive_one_keeps_the_old_name():
    assert [lanes.lane_queue(lane) for lane in lanes.LANES] == ["analysis.gpu", "analysis", "analysis.batch"]
    assert lanes.lane_queue(lanes.BATCH, base="jobs") == "jobs.batch"
    assert [lanes.split_queue(name) for name in ("analysis", "analysis.batch", "analysis.gpu", "jobs.gpu.x")] == [
        ("analysis", "interactive"), ("analysis", "batch"), ("analysis", "gpu"), ("jobs.gpu.x", "interactive")]
    with pytest.raises(lanes.UnknownLaneError):
        lanes.lane_queue("express")


def test_workers_poll_front_queues_first_then_gpu_interactive_batch_whatever_order_they_were_given():
    assert lanes.consume_order(["analysis.batch", "analysis", "analysis.gpu"]) == [
        "analysis.gpu.front", "analysis.front", "analysis.batch.front", "analysis.gpu", "analysis", "analysis.batch"]
    assert lanes.consume_order(["analysis", "analysis.batch", "analysis.front"]) == [
        "analysis.front", "analysis.batch.front", "analysis", "analysis.batch"]
    assert lanes.consume_order(["only"]) == ["only.front", "only"]  # a queue outside the naming keeps working


def test_a_cpu_worker_serves_interactive_and_batch_and_worker_queues_still_overrides():
    assert Settings.from_env({}).worker_queues == ("analysis", "analysis.batch") == Settings().worker_queues
    assert lanes.default_worker_queues(gpu=True) == ("analysis.gpu", "analysis", "analysis.batch")
    given = Settings.from_env({"WORKER_QUEUES": "jobs.gpu,jobs"})
    assert given.worker_queues == ("jobs.gpu", "jobs") and lanes.base_queue(given.worker_queues) == "jobs"


def test_the_gpu_lane_threshold_is_a_setting():
    assert Settings().gpu_lane_min_duration_s == 600
    assert Settings.from_env({"GPU_LANE_MIN_DURATION_S": "120"}).gpu_lane_min_duration_s == 120
