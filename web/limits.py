"""Per-owner limits on the API's writes: a request rate, active jobs, and stored upload bytes.

Keyed by `current_owner()`, so once API keys exist each key's owner has its own budget.

- Rate (RATE_LIMIT_PER_MINUTE): a fixed one-minute window counted in Redis (INCR + EXPIRE in one
  transaction) under `deepfake:rate:<queue base>:<owner>:<minute>`, shared by every web process of
  the deployment (services sharing one Redis have different queue bases). Over it: 429 `rate_limited`
  with `Retry-After` (the seconds to the next window). A fixed window lets up to twice the limit through across a window
  boundary; it is a guard against floods, not a billing meter. Without Redis configured there is no
  limit; with Redis unreachable the request goes on and a warning is logged (the limiter must not be
  the reason a write fails; the enqueue will say so itself).
- Active jobs (MAX_ACTIVE_JOBS_PER_OWNER): queued + running, from the jobs table. Over it: 429
  `too_many_active_jobs` (no Retry-After: when jobs finish is not known).
- Stored uploads (MAX_STORAGE_MB_PER_OWNER, shared.db.quotas): checked against the declared
  Content-Length before the body is read, and against the stored file's size after. Over it: 413
  `storage_quota_exceeded`: the client's own request is too large for what it may still store (a 4xx
  it can act on by deleting jobs), not the server out of space (507, a 5xx that clients retry and
  monitoring pages on).

Both quotas are read then written without a lock: concurrent uploads of one owner can overshoot
them by the uploads in flight.
"""
from __future__ import annotations

import logging
import math
import time

import redis
from flask import current_app
from redis.exceptions import RedisError

from shared import lanes
from shared.db import quotas
from web.context import current_owner, current_settings
from web.db import get_session
from web.errors import ApiError

log = logging.getLogger(__name__)
MIB = 1024 * 1024
RATE_WINDOW_S = 60
# A Redis that does not answer must not hold a write up for long: past this the request goes on unlimited.
RATE_REDIS_TIMEOUT_S = 0.5
KEY_PREFIX = "deepfake:rate:"
_CLIENT = "deepfake.limits_redis"


class RateLimitedError(ApiError):
    status = 429
    code = "rate_limited"


class TooManyActiveJobsError(ApiError):
    status = 429
    code = "too_many_active_jobs"


class StorageQuotaExceededError(ApiError):
    status = 413
    code = "storage_quota_exceeded"


def check_write_allowed(*, declared_bytes: int | None = None, new_jobs: int = 1, owner: str | None = None) -> None:
    """Before a write is read: the rate, the active jobs it would add, and its declared upload size.

    `owner`: whose budget (default `current_owner()`; a batch item counts for the batch's owner, which is
    who an admin adding to another owner's batch writes for).
    """
    owner = owner or current_owner()
    check_rate(owner=owner)
    check_active_jobs(new_jobs, owner=owner)
    if declared_bytes:
        check_storage(declared_bytes, owner=owner)


def check_rate(*, owner: str | None = None) -> None:
    """Count this request in the owner's current window; 429 `rate_limited` past RATE_LIMIT_PER_MINUTE."""
    limit = current_settings().rate_limit_per_minute
    client = _redis_client()
    if not limit or client is None:
        return
    now = time.time()
    window = int(now // RATE_WINDOW_S)
    key = f"{KEY_PREFIX}{_deployment()}:{owner or current_owner()}:{window}"
    try:
        with client.pipeline(transaction=True) as pipe:
            count, _ = pipe.incr(key).expire(key, 2 * RATE_WINDOW_S).execute()
    except RedisError as exc:
        log.warning("rate limit not applied: Redis unreachable (%s: %s)", type(exc).__name__, exc)
        return
    if count > limit:
        retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_S - now))
        raise RateLimitedError(f"more than {limit} writes a minute (RATE_LIMIT_PER_MINUTE); try again in "
                               f"{retry_after} s", headers={"Retry-After": str(retry_after)})


def check_active_jobs(new_jobs: int = 1, *, owner: str | None = None) -> None:
    """429 `too_many_active_jobs` when `new_jobs` more would pass MAX_ACTIVE_JOBS_PER_OWNER."""
    limit = current_settings().max_active_jobs_per_owner
    if not limit:
        return
    active = quotas.active_job_count(session=get_session(), owner=owner or current_owner())
    if active + new_jobs > limit:
        raise TooManyActiveJobsError(f"{active} of your jobs are queued or running and this server allows "
                                     f"{limit} (MAX_ACTIVE_JOBS_PER_OWNER); wait for some to finish or cancel them")


def check_storage(new_bytes: int, *, owner: str | None = None) -> None:
    """413 `storage_quota_exceeded` when `new_bytes` more would pass MAX_STORAGE_MB_PER_OWNER."""
    settings = current_settings()
    limit_mb = settings.max_storage_mb_per_owner
    if not limit_mb:
        return
    stored = quotas.stored_upload_bytes(session=get_session(), owner=owner or current_owner(),
                                        keep_days=settings.upload_retention_days,
                                        failed_batch_keep_days=settings.failed_batch_upload_retention_days)
    if stored + new_bytes > limit_mb * MIB:
        raise StorageQuotaExceededError(
            f"your stored uploads take {stored / MIB:.1f} MB; {new_bytes / MIB:.1f} MB more would pass this server's "
            f"{limit_mb} MB (MAX_STORAGE_MB_PER_OWNER); delete ended jobs to make room")


def _deployment() -> str:
    """The base of this deployment's queue names: services sharing one Redis count apart."""
    return lanes.split_queue(current_app.config["ANALYSIS_QUEUE"])[0]


def _redis_client() -> redis.Redis | None:
    """The app's limiter client (lazy: it connects on first use); None without REDIS_URL."""
    app = current_app._get_current_object()
    if _CLIENT not in app.extensions:
        url = current_settings().redis_url
        app.extensions.setdefault(_CLIENT, url and redis.Redis.from_url(
            url, socket_connect_timeout=RATE_REDIS_TIMEOUT_S, socket_timeout=RATE_REDIS_TIMEOUT_S))
    return app.extensions[_CLIENT] or None
