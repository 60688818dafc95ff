"""Worker liveness in Redis: workers write a heartbeat, the web reads who is alive.

Each worker's main process adds itself to one sorted set per queue it consumes, scored with
Redis's own clock (so machines with skewed clocks agree), every HEARTBEAT_EVERY_S. A worker is
alive while its score is younger than ALIVE_FOR_S. This lives in `shared` because both sides
need the key layout and the web must not import `worker`. Needs only redis-py.
"""
from __future__ import annotations

import redis

KEY_PREFIX = "deepfake:workers:"
HEARTBEAT_EVERY_S = 5.0
# Three beats: one slow or missed write (a busy Redis, a GC pause) does not mark a worker down.
ALIVE_FOR_S = 3 * HEARTBEAT_EVERY_S


def workers_key(queue: str) -> str:
    """The sorted set of the workers consuming `queue` (member: worker name, score: last beat)."""
    return f"{KEY_PREFIX}{queue}"


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def beat(client: redis.Redis, *, worker: str, queues: list[str] | tuple[str, ...]) -> None:
    """Say that `worker` is alive and consumes `queues`; forget workers silent for long."""
    now = redis_now(client)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        key = workers_key(queue)
        pipe.zadd(key, {worker: now})
        pipe.zremrangebyscore(key, "-inf", now - 10 * ALIVE_FOR_S)
        pipe.expire(key, int(10 * ALIVE_FOR_S))
    pipe.execute()


def leave(client: redis.Redis, *, worker: str, queues: list[str] | tuple[str, ...]) -> None:
    """`worker` stops: readiness drops at once instead of after ALIVE_FOR_S."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrem(workers_key(queue), worker)
    pipe.execute()


def heartbeat_ages(client: redis.Redis, *, queue: str) -> dict[str, float]:
    """Seconds since each recently seen worker of `queue` last beat, alive or not (bounded set)."""
    now = redis_now(client)
    members = client.zrangebyscore(workers_key(queue), now - 10 * ALIVE_FOR_S, "+inf", withscores=True)
    return {name.decode() if isinstance(name, bytes) else name: max(0.0, now - score) for name, score in members}


def alive_workers(client: redis.Redis, *, queue: str) -> list[str]:
    """Names of the workers of `queue` that beat within ALIVE_FOR_S."""
    return sorted(name for name, age in heartbeat_ages(client, queue=queue).items() if age <= ALIVE_FOR_S)
