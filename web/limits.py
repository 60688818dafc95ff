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

Uploads in flight count too. A write that passes the quotas reserves what it declared (one job per
upload, its Content-Length, an import's files and bytes) in Redis, in one step with the check (a Lua
script over `deepfake:inflight:<queue base>:<owner>`, a sorted set of reservations scored by when they
lapse); the stored size re-checks by resizing that reservation to the file's, again in one step; the
reservation ends with the request (a crashed request's lapses after RESERVATION_TTL_S). Without it,
parallel uploads each passed against the same database figures and an owner could store many times
the quota. Without Redis (or with it unreachable) the quotas are checked against the database alone.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass

import redis
from flask import Flask, current_app, g
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
INFLIGHT_PREFIX = "deepfake:inflight:"
# How long a reservation holds without its request ending it: longer than any upload should take.
RESERVATION_TTL_S = 3 * 3600
_CLIENT = "deepfake.limits_redis"
_RESERVATIONS = "deepfake_reservations"  # flask.g: this request's reservations, ended at teardown

# KEYS[1]: the owner's reservations. ARGV: now, lapses at, member to replace ("" none), new member,
# its bytes, its jobs, stored bytes and active jobs in the database, byte and job limits (0: none), TTL.
# Returns {1 reserved | 0 over the job quota | -1 over the byte quota, others' bytes, others' jobs}.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[1], ARGV[3]) end
local bytes, jobs = 0, 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local b, j = string.match(member, '|(%d+)|(%d+)$')
  bytes = bytes + tonumber(b)
  jobs = jobs + tonumber(j)
end
local job_limit, byte_limit = tonumber(ARGV[10]), tonumber(ARGV[9])
if job_limit > 0 and tonumber(ARGV[8]) + jobs + tonumber(ARGV[6]) > job_limit then return {0, bytes, jobs} end
if byte_limit > 0 and tonumber(ARGV[7]) + bytes + tonumber(ARGV[5]) > byte_limit then return {-1, bytes, jobs} end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[11]))
return {1, bytes, jobs}
"""


class RateLimitedError(ApiError):
    status = 429
    code = "rate_limited"


class TooManyActiveJobsError(ApiError):
    status = 429
    code = "too_many_active_jobs"


class StorageQuotaExceededError(ApiError):
    status = 413
    code = "storage_quota_exceeded"


def init_app(app: Flask) -> None:
    """End each request's quota reservations when it ends, however it ends."""
    app.teardown_request(_end_reservations)


def check_write_allowed(*, declared_bytes: int | None = None, new_jobs: int = 1, owner: str | None = None) -> None:
    """Before a write is read: the rate, the active jobs it would add, and its declared upload size,
    reserved for the rest of the request (see the module).

    `owner`: whose budget (default `current_owner()`; a batch item counts for the batch's owner, which is
    who an admin adding to another owner's batch writes for).
    """
    owner = owner or current_owner()
    check_rate(owner=owner)
    reserve(owner=owner, jobs=new_jobs, size=declared_bytes or 0)


def reserve(*, owner: str, jobs: int, size: int) -> None:
    """Check the active-job and storage quotas for `jobs` more jobs and `size` more bytes, counting other
    requests' reservations, and reserve them until this request ends; the errors of the two checks."""
    settings = current_settings()
    job_limit, byte_limit = settings.max_active_jobs_per_owner, settings.max_storage_mb_per_owner * MIB
    if not job_limit and not byte_limit:
        return
    if not _reserve_in_redis(owner=owner, jobs=jobs, size=size, job_limit=job_limit, byte_limit=byte_limit):
        check_active_jobs(jobs, owner=owner)  # no Redis: the database's figures alone
        if size:
            check_storage(size, owner=owner)


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
        _active_refused(active=active, in_flight=0, limit=limit)


def check_storage(new_bytes: int, *, owner: str | None = None) -> None:
    """413 `storage_quota_exceeded` when `new_bytes` more would pass MAX_STORAGE_MB_PER_OWNER. Where this
    request reserved a declared size for the owner, that reservation becomes `new_bytes` (the stored file's
    size), checked against the others in the same step."""
    settings = current_settings()
    limit_mb = settings.max_storage_mb_per_owner
    if not limit_mb:
        return
    owner = owner or current_owner()
    held = _reservation_of(owner)
    if held is not None and _reserve_in_redis(owner=owner, jobs=held.jobs, size=new_bytes, job_limit=0,
                                              byte_limit=limit_mb * MIB, replacing=held):
        return
    stored = _stored_bytes(owner)
    if stored + new_bytes > limit_mb * MIB:
        _storage_refused(stored=stored, in_flight=0, new_bytes=new_bytes, limit_mb=limit_mb)


def _stored_bytes(owner: str) -> int:
    settings = current_settings()
    return quotas.stored_upload_bytes(session=get_session(), owner=owner, keep_days=settings.upload_retention_days,
                                      failed_batch_keep_days=settings.failed_batch_upload_retention_days)


def _storage_refused(*, stored: int, in_flight: int, new_bytes: int, limit_mb: int) -> None:
    flight = f" and uploads in progress {in_flight / MIB:.1f} MB more" if in_flight else ""
    raise StorageQuotaExceededError(
        f"your stored uploads take {stored / MIB:.1f} MB{flight}; {new_bytes / MIB:.1f} MB more would pass this "
        f"server's {limit_mb} MB (MAX_STORAGE_MB_PER_OWNER); delete ended jobs to make room")


def _active_refused(*, active: int, in_flight: int, limit: int) -> None:
    flight = f" (and {in_flight} more are being uploaded)" if in_flight else ""
    raise TooManyActiveJobsError(f"{active} of your jobs are queued or running{flight} and this server allows "
                                 f"{limit} (MAX_ACTIVE_JOBS_PER_OWNER); wait for some to finish or cancel them")


@dataclass(frozen=True)
class _Reservation:
    key: str
    member: str
    owner: str
    jobs: int


def _reserve_in_redis(*, owner: str, jobs: int, size: int, job_limit: int, byte_limit: int,
                      replacing: _Reservation | None = None) -> bool:
    """The atomic check and reservation; raises the quota's error when over it. False when there is no
    Redis to hold reservations (or it did not answer): the caller checks the database alone."""
    client = _redis_client()
    if client is None:
        return False
    active = quotas.active_job_count(session=get_session(), owner=owner) if job_limit else 0
    stored = _stored_bytes(owner) if byte_limit else 0
    key = f"{INFLIGHT_PREFIX}{_deployment()}:{owner}"
    member = f"{uuid.uuid4()}|{int(size)}|{int(jobs)}"
    now = time.time()
    try:
        verdict, others_bytes, others_jobs = client.eval(
            _RESERVE, 1, key, now, now + RESERVATION_TTL_S, replacing.member if replacing else "", member, int(size),
            int(jobs), stored, active, byte_limit, job_limit, RESERVATION_TTL_S)
    except RedisError as exc:
        log.warning("quota reservations not used: Redis unreachable (%s: %s)", type(exc).__name__, exc)
        return False
    # The script dropped the replaced reservation whatever its verdict, and added this one only if it passed.
    held = [r for r in g.get(_RESERVATIONS, []) if r is not replacing]
    if int(verdict) == 1:
        held.append(_Reservation(key=key, member=member, owner=owner, jobs=jobs))
    setattr(g, _RESERVATIONS, held)
    if int(verdict) == 0:
        _active_refused(active=active, in_flight=int(others_jobs), limit=job_limit)
    if int(verdict) == -1:
        _storage_refused(stored=stored, in_flight=int(others_bytes), new_bytes=size, limit_mb=byte_limit // MIB)
    return True


def _reservation_of(owner: str) -> _Reservation | None:
    return next((r for r in g.get(_RESERVATIONS, []) if r.owner == owner), None)


def _end_reservations(_error: BaseException | None = None) -> None:
    reservations = g.pop(_RESERVATIONS, [])
    client = _redis_client() if reservations else None
    for reservation in reservations:
        try:
            client.zrem(reservation.key, reservation.member)
        except RedisError as exc:  # it lapses after RESERVATION_TTL_S
            log.warning("a quota reservation was not ended: Redis unreachable (%s)", exc)


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
