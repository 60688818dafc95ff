"""Worker liveness in Redis: workers write a heartbeat, the web reads who is alive.

Each worker's main process adds itself to one sorted set per queue it consumes, scored with
Redis's own clock (so machines with skewed clocks agree), every HEARTBEAT_EVERY_S. A worker is
alive while its score is younger than ALIVE_FOR_S. With each beat a worker also refreshes its
`WorkerReport` (device, the face detector `auto` resolves to there, its checkpoints) under its own key:
only the workers know what their machines hold (the web image carries no weights). A worker from before
the report writes none and is shown as unknown. This lives in `shared` because both sides need the key
layout and the web must not import `worker`. Needs only redis-py.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

KEY_PREFIX = "deepfake:workers:"
HEARTBEAT_EVERY_S = 5.0
# Three beats: one slow or missed write (a busy Redis, a GC pause) does not mark a worker down.
ALIVE_FOR_S = 3 * HEARTBEAT_EVERY_S
# Heartbeats and reports of workers silent this long are dropped (bounded keys after a crash).
FORGET_AFTER_S = 10 * ALIVE_FOR_S
REPORT_KEY_PREFIX = "deepfake:worker-report:"
REPORT_VERSION = 1  # bump when WorkerReport's fields change; a reader treats other versions as unknown


@dataclass(frozen=True)
class WorkerReport:
    """What one worker runs, found by file name when it starts (no model loaded)."""

    device: str  # "cpu", "cuda" or "cuda:N"
    detector: str  # what face_detector=auto resolves to: "retinaface-<backbone>" or "opencv"
    detector_weights: str | None  # the RetinaFace file it loads; None with the Haar fallback
    detector_note: str | None  # why the fallback, when it is one
    checkpoints: tuple[str, ...]  # checkpoint file names in the worker's WEIGHTS_DIR

    @property
    def is_fallback(self) -> bool:
        return self.detector == "opencv"

    def to_json(self) -> str:
        return json.dumps({"version": REPORT_VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerReport | None:
        """The report, or None when it is unreadable or of another version (shown as unknown)."""
        try:
            data = json.loads(text)
            if data.pop("version", None) != REPORT_VERSION:
                return None
            return cls(**{**data, "checkpoints": tuple(data["checkpoints"])})
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def workers_key(queue: str) -> str:
    """The sorted set of the workers consuming `queue` (member: worker name, score: last beat)."""
    return f"{KEY_PREFIX}{queue}"


def report_key(worker: str) -> str:
    """Where `worker` keeps its WorkerReport (a string, expiring like its heartbeat)."""
    return f"{REPORT_KEY_PREFIX}{worker}"


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def beat(client: redis.Redis, *, worker: str, queues: list[str] | tuple[str, ...],
         report: WorkerReport | None = None) -> None:
    """Say that `worker` is alive, consumes `queues` and runs what `report` says; forget workers silent for long."""
    now = redis_now(client)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        key = workers_key(queue)
        pipe.zadd(key, {worker: now})
        pipe.zremrangebyscore(key, "-inf", now - FORGET_AFTER_S)
        pipe.expire(key, int(FORGET_AFTER_S))
    if report is not None:
        pipe.set(report_key(worker), report.to_json(), ex=int(FORGET_AFTER_S))
    pipe.execute()


def leave(client: redis.Redis, *, worker: str, queues: list[str] | tuple[str, ...]) -> None:
    """`worker` stops: readiness drops at once instead of after ALIVE_FOR_S."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrem(workers_key(queue), worker)
    pipe.delete(report_key(worker))
    pipe.execute()


def heartbeat_ages(client: redis.Redis, *, queue: str) -> dict[str, float]:
    """Seconds since each recently seen worker of `queue` last beat, alive or not (bounded set)."""
    now = redis_now(client)
    members = client.zrangebyscore(workers_key(queue), now - FORGET_AFTER_S, "+inf", withscores=True)
    return {name.decode() if isinstance(name, bytes) else name: max(0.0, now - score) for name, score in members}


def alive_workers(client: redis.Redis, *, queue: str) -> list[str]:
    """Names of the workers of `queue` that beat within ALIVE_FOR_S."""
    return sorted(name for name, age in heartbeat_ages(client, queue=queue).items() if age <= ALIVE_FOR_S)


def worker_reports(client: redis.Redis, *, workers: list[str]) -> dict[str, WorkerReport | None]:
    """Each of `workers`' report; None for one that wrote none (an older worker) or an unreadable one."""
    if not workers:
        return {}
    texts = client.mget([report_key(worker) for worker in workers])
    return {worker: None if text is None else WorkerReport.from_json(text) for worker, text in zip(workers, texts)}
