"""/metrics: the job service in the Prometheus text exposition format (version 0.0.4).

An operator endpoint, for a Prometheus on the deployment's network: it shows counts and timings,
no job contents or owners, and stays outside any user login. Everything is read at scrape time:
the jobs table through `shared.db.metrics` (bounded queries) and, where cheap, Redis (messages
waiting in each lane's queue and its front queue, worker heartbeats per lane queue). A broker that
does not answer leaves its metrics out and sets `deepfake_broker_up 0` rather than failing the scrape.
"""
from __future__ import annotations

import math
from typing import Iterable

import redis
from flask import Blueprint, Response, current_app
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel

from shared import lanes, liveness
from shared.db.metrics import RECENT_S, JobMetrics, read_job_metrics
from web.context import current_settings
from web.db import get_session

bp = Blueprint("metrics", __name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BROKER_TIMEOUT_S = 1.0
# Job wall times from seconds-long clips to hour-long videos.
DURATION_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


@bp.get("/metrics")
def metrics() -> Response:
    """The service's metrics for Prometheus to scrape."""
    jobs = read_job_metrics(session=get_session())
    lines = list(job_lines(jobs))
    lines += broker_lines(current_app.config["ANALYSIS_QUEUE"])
    return Response("\n".join(lines) + "\n", content_type=CONTENT_TYPE)


def job_lines(jobs: JobMetrics) -> Iterable[str]:
    yield from _family("deepfake_jobs", "gauge", "Jobs queued or running now.",
                       [({"status": status}, count) for status, count in jobs.active.items()])
    yield from _family("deepfake_lane_jobs", "gauge", "Jobs queued or running now, by lane (shared.lanes).",
                       [({"status": status, "lane": lane}, count)
                        for (status, lane), count in sorted(jobs.active_by_lane.items())])
    yield from _family("deepfake_recent_jobs", "gauge", f"Jobs created in the last {RECENT_S} s that ended, by status.",
                       [({"status": status}, count) for status, count in jobs.recent_ended.items()])
    yield from _family("deepfake_oldest_queued_job_age_seconds", "gauge",
                       "Seconds since the oldest queued job was created (0 when none waits).",
                       [({}, jobs.oldest_queued_age_s or 0.0)])
    yield from _family("deepfake_running_job_heartbeat_age_seconds", "gauge",
                       "Seconds since the freshest heartbeat of each worker's running jobs.",
                       [({"worker": worker}, age) for worker, age in sorted(jobs.running_heartbeat_age_s.items())])
    frames = sum(job.frames for job in jobs.recent)
    busy_s = sum(job.duration_s for job in jobs.recent)
    yield from _family("deepfake_recent_frames_analysed", "gauge",
                       f"Frames analysed by jobs that succeeded, created in the last {RECENT_S} s.", [({}, frames)])
    yield from _family("deepfake_recent_frames_per_second", "gauge",
                       f"Frames per second of job wall time, jobs that succeeded, created in the last {RECENT_S} s.",
                       [({}, frames / busy_s if busy_s > 0 else 0.0)])
    yield from _histogram("deepfake_recent_job_duration_seconds",
                          f"Wall time from first start to success, jobs created in the last {RECENT_S} s.",
                          [job.duration_s for job in jobs.recent])


def broker_lines(queue: str) -> list[str]:
    """Messages waiting in each lane's queue named from `queue` (the web's interactive queue) and in their
    front queues, and the heartbeats of each lane queue's workers, from Redis."""
    base = lanes.split_queue(queue)[0]
    lane_queues = [lanes.lane_queue(lane, base=base) for lane in lanes.LANES]
    client = redis.Redis.from_url(current_settings().redis_url or "", socket_connect_timeout=BROKER_TIMEOUT_S,
                                  socket_timeout=BROKER_TIMEOUT_S)
    try:
        depths = {name: _queue_length(client, name)
                  for lane_queue in lane_queues for name in (lane_queue, lanes.front_queue(lane_queue))}
        ages = {lane_queue: liveness.heartbeat_ages(client, queue=lane_queue) for lane_queue in lane_queues}
    except redis.RedisError:
        return list(_family("deepfake_broker_up", "gauge", "1 when Redis answered this scrape.", [({}, 0)]))
    finally:
        client.close()
    return [*_family("deepfake_broker_up", "gauge", "1 when Redis answered this scrape.", [({}, 1)]),
            *_family("deepfake_queue_messages", "gauge", "Task messages waiting in the broker, by queue.",
                     [({"queue": name}, depth) for name, depth in depths.items()]),
            *_family("deepfake_workers_alive", "gauge",
                     f"Workers of the queue that beat within {liveness.ALIVE_FOR_S:.0f} s.",
                     [({"queue": name}, sum(age <= liveness.ALIVE_FOR_S for age in workers.values()))
                      for name, workers in ages.items()]),
            *_family("deepfake_worker_heartbeat_age_seconds", "gauge",
                     "Seconds since each recently seen worker's last liveness beat.",
                     [({"worker": worker, "queue": name}, age)
                      for name, workers in ages.items() for worker, age in sorted(workers.items())])]


def _queue_length(client: redis.Redis, queue: str) -> int:
    """Celery's Redis transport keeps one list per priority step."""
    keys = [queue if step == 0 else f"{queue}{RedisChannel.sep}{step}" for step in PRIORITY_STEPS]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    return sum(pipe.execute())


def _family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> Iterable[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} {kind}"
    for labels, value in samples:
        yield f"{name}{_labels(labels)} {_number(value)}"


def _histogram(name: str, help_text: str, values: list[float]) -> Iterable[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} histogram"
    for bound in (*DURATION_BUCKETS_S, math.inf):
        count = sum(value <= bound for value in values)
        yield f"{name}_bucket{_labels({'le': _number(bound)})} {count}"
    yield f"{name}_sum {_number(sum(values))}"
    yield f"{name}_count {len(values)}"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (f'{key}="{_escape(str(value))}"' for key, value in labels.items())
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
