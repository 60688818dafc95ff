"""The reaper: a thread in each worker's main process that finds jobs nobody will run.

- Running jobs whose heartbeat stopped (their worker was killed, or its machine went away) are
  requeued, or failed once their attempts are spent.
- Queued jobs whose task message is lost (the broker lost its data, the web was killed between
  its commit and its send, a withdrawal failed) are sent again: a job queued and not sent for
  REQUEUE_LOST_AFTER_S whose id is in no broker queue and was not just delivered to a worker.
  Looking in the broker (rather than re-sending on a timer) keeps jobs that merely wait in a long
  queue from being sent again and again.

Both go to the front queue of the job's lane (shared.lanes; `Job.lane`), whichever lanes this
reaper's worker consumes: a reaper looks for a job's message in its lane's queue and that queue's
front queue. Several reapers may run at once (one per worker); each requeue or re-send is a
conditional UPDATE, so only one of them sends a given job.

- The retention sweeps that walk the whole store (worker/sweeps.py) run on its first pass and then
  every RETENTION_SWEEP_EVERY_S, not after every job.

- Queued jobs of the gpu lane wait for a GPU worker; once none has been alive for
  `gpu_absent_after_s` (HEARTBEAT_TIMEOUT_S: as long as a silent worker counts as lost), they move
  to the lane they would have had without one (batch items to batch, uploads to interactive), at
  its front. A message left in the gpu queue finds the job taken when a GPU worker comes back.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Iterator

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from sqlalchemy.pool import NullPool

from shared import lanes, liveness
from shared.db import jobs
from shared.db import lanes as lane_store
from shared.db.session import make_engine, make_session_factory
from shared.settings import Settings
from shared.storage import make_store
from worker.celery_app import ANALYZE_TASK, front_queue
from worker import webhooks
from worker.sweeps import RETENTION_SWEEP_EVERY_S, sweep_retention

log = logging.getLogger(__name__)
# Messages read per LRANGE while looking for jobs in a broker queue.
SCAN_CHUNK = 500
# Queued jobs looked up in the broker per pass, oldest first (they sit nearest the consumer end).
MAX_LOST_PER_PASS = 500
BROKER_TIMEOUT_S = 5.0


class Reaper:
    """Runs `reap_once` every `interval_s` until stopped."""

    def __init__(self, app: Celery, settings: Settings, *, interval_s: float | None = None,
                 gpu_absent_after_s: float | None = None, sweep_every_s: float = RETENTION_SWEEP_EVERY_S) -> None:
        self.app = app
        self.sweep_every_s = sweep_every_s
        self._last_sweep: float | None = None  # monotonic time of this reaper's last retention sweep
        self._store = None  # made on the first sweep
        self._orphans: dict[str, float] = {}  # uploads no job names, with when a sweep first saw them
        self.settings = settings
        self.interval_s = interval_s or reap_interval_s(min(settings.heartbeat_timeout_s,
                                                            settings.requeue_lost_after_s))
        self.gpu_absent_after_s = settings.heartbeat_timeout_s if gpu_absent_after_s is None else gpu_absent_after_s
        # When this reaper first found gpu-lane jobs waiting and no GPU worker alive (monotonic clock).
        self._gpu_absent_since: float | None = None
        # The lane queues are named from the base of this worker's queues, as the web's are from its own.
        self.base_queue = lanes.base_queue(settings.worker_queues)
        # NullPool: no connection is kept open across a fork of the prefork pool.
        self._engine = make_engine(settings.effective_database_url, poolclass=NullPool)
        self._sessions = make_session_factory(self._engine)
        self._broker = BrokerQueues(settings.redis_url or "")
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deepfake-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._engine.dispose()
        self._broker.close()

    def reap_once(self) -> list[str]:
        """One pass: requeue stale running jobs, then re-send lost queued ones (returns their ids), then send
        the webhooks of jobs and batches that ended unannounced and those overdue (worker.webhooks)."""
        reaped = self.requeue_stale() + self.resend_lost()
        webhooks.resend_due(app=self.app, session_factory=self._sessions, settings=self.settings)
        self.sweep_if_due()
        return reaped

    def sweep_if_due(self) -> bool:
        """The store-wide retention sweeps (worker/sweeps.py), on this reaper's first pass and then every
        `sweep_every_s`; whether they ran."""
        now = time.monotonic()
        if self._last_sweep is not None and now - self._last_sweep < self.sweep_every_s:
            return False
        self._last_sweep = now
        if self._store is None:
            self._store = make_store(self.settings)
        sweep_retention(session_factory=self._sessions, store=self._store, settings=self.settings,
                        orphans=self._orphans)
        return True

    def requeue_stale(self) -> list[str]:
        """Requeue or fail the stale running jobs now; send the requeued ones to their lane's front queue.

        The tasks are sent before the requeue commits: if the broker refuses one, nothing is
        committed and the jobs stay stale-running for the next pass, instead of sitting queued
        with no task to run them. A task sent for a job whose requeue then did not commit is still
        honoured: a worker claims a stale running job as it would a queued one.
        """
        requeued = self._requeue_to_front(lambda session: jobs.reap_stale_jobs(
            session=session, stale_after_s=self.settings.heartbeat_timeout_s,
            max_attempts=self.settings.job_max_attempts, commit=False))
        for job_id in requeued:
            log.warning("job %s: its worker stopped responding; requeued at the front", job_id)
        return requeued

    def hand_back(self, workers: list[str]) -> list[str]:
        """A shutting-down worker's running jobs go back to the front of their lane at once (sent before
        the commit, as for stale jobs), instead of waiting HEARTBEAT_TIMEOUT_S to be found stale."""
        handed = self._requeue_to_front(lambda session: jobs.hand_back_jobs(session=session, workers=workers))
        for job_id in handed:
            log.warning("job %s: handed back at shutdown; requeued at the front of its lane", job_id)
        return handed

    def _requeue_to_front(self, requeue: Any) -> list[str]:
        """Run `requeue(session)` (flushed, uncommitted: it returns the job ids it moved to queued), send each
        job to its lane's front queue, then commit: a refused send commits nothing."""
        with self._sessions() as session:
            ids = requeue(session)
            job_lanes = lane_store.job_lanes(session=session, job_ids=ids)
            for job_id in ids:
                self._send(job_id, lane=job_lanes[job_id])
            session.commit()
        return ids

    def resend_lost(self) -> list[str]:
        """Send again the queued jobs whose message is in none of their lane's queues (sent before committing)."""
        after_s = self.settings.requeue_lost_after_s
        with self._sessions() as session:
            candidates = jobs.unsent_queued_jobs(session=session, sent_before_s=after_s, limit=MAX_LOST_PER_PASS)
            if not candidates:
                return []
            job_lanes = lane_store.job_lanes(session=session, job_ids=candidates)
            stranded = self._stranded_on_gpu_lane(job_lanes)
            waiting = self._waiting({job_id: lane for job_id, lane in job_lanes.items() if job_id not in stranded},
                                    delivered_within_s=after_s)
            resent, moved = [], []
            for job_id in candidates:
                if job_id in stranded:
                    lane = lane_store.move_off_gpu_lane(session=session, job_id=job_id, sent_before_s=after_s)
                    if lane is not None:
                        self._send(job_id, lane=lane)
                        moved.append((job_id, lane))
                elif job_id not in waiting and jobs.record_resend(session=session, job_id=job_id,
                                                                  sent_before_s=after_s):
                    self._send(job_id, lane=job_lanes[job_id])
                    resent.append(job_id)
            session.commit()
        for job_id in resent:
            log.warning("job %s: queued but its task was in no broker queue; sent again", job_id)
        for job_id, lane in moved:
            log.warning("job %s: no GPU worker alive for %.0f s; moved to the %s lane", job_id,
                        self.gpu_absent_after_s, lane)
        return resent + [job_id for job_id, _ in moved]

    def _stranded_on_gpu_lane(self, job_lanes: dict[str, str]) -> set[str]:
        """The gpu-lane jobs of `job_lanes` if no GPU worker has been alive for `gpu_absent_after_s`, as
        this reaper saw it (from its first pass that found gpu-lane jobs waiting without one)."""
        on_gpu_lane = {job_id for job_id, lane in job_lanes.items() if lane == lanes.GPU}
        if not on_gpu_lane:
            return set()
        if self._broker.workers_alive(self._lane_queue(lanes.GPU)):
            self._gpu_absent_since = None
            return set()
        now = time.monotonic()
        if self._gpu_absent_since is None:
            self._gpu_absent_since = now
        return on_gpu_lane if now - self._gpu_absent_since >= self.gpu_absent_after_s else set()

    def _waiting(self, job_lanes: dict[str, str], *, delivered_within_s: float) -> set[str]:
        """The jobs of `job_lanes` whose message waits in their lane's queue (or its front queue), or was
        delivered lately."""
        found = self._broker.delivered_recently(set(job_lanes), within_s=delivered_within_s)
        for lane in lanes.LANES:
            wanted = {job_id for job_id, job_lane in job_lanes.items() if job_lane == lane} - found
            if wanted:
                queue = self._lane_queue(lane)
                found |= self._broker.waiting_job_ids(wanted, queues=[front_queue(queue), queue])
        return found

    def _lane_queue(self, lane: str) -> str:
        return lanes.lane_queue(lane, base=self.base_queue)

    def _send(self, job_id: str, *, lane: str) -> None:
        self.app.send_task(ANALYZE_TASK, args=[job_id], queue=front_queue(self._lane_queue(lane)))

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.reap_once()
            except Exception:  # the reaper must outlive database and broker outages
                log.warning("reaper pass failed; trying again in %.0fs", self.interval_s, exc_info=True)


class BrokerQueues:
    """Which jobs have a task message in Celery's Redis transport: waiting in a queue (one Redis list
    per queue and priority step, consumed from the right), or delivered to a worker and not yet
    acknowledged (the `unacked` hash, indexed by delivery time)."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=BROKER_TIMEOUT_S,
                                            socket_timeout=BROKER_TIMEOUT_S)

    def close(self) -> None:
        self._client.close()

    def workers_alive(self, queue: str) -> bool:
        """Whether a worker of `queue` beat lately (shared.liveness)."""
        return bool(liveness.alive_workers(self._client, queue=queue))

    def waiting_job_ids(self, wanted: set[str], *, queues: list[str]) -> set[str]:
        """The ids of `wanted` whose task waits in one of `queues` (each at every priority step)."""
        found: set[str] = set()
        keys = [queue if step == 0 else f"{queue}{RedisChannel.sep}{step}"
                for queue in queues for step in PRIORITY_STEPS]
        for key in keys:
            for raw in self._oldest_first(key):
                if len(found) == len(wanted):
                    return found
                job_id = task_job_id(raw)
                if job_id in wanted:
                    found.add(job_id)
        return found

    def delivered_recently(self, wanted: set[str], *, within_s: float) -> set[str]:
        """The ids of `wanted` whose task was delivered to a worker less than `within_s` ago, unacknowledged.

        A delivery older than that is not counted: a worker that died holding it will not run it,
        and a live one claims within seconds (or holds a retry no longer than the retry cap).
        """
        tags = self._client.zrangebyscore(RedisChannel.unacked_index_key, time.time() - within_s, "+inf")
        entries = self._client.hmget(RedisChannel.unacked_key, tags) if tags else []
        found = set()
        for entry in entries:  # each is [message, exchange, routing key]
            try:
                job_id = message_job_id(json.loads(entry)[0]) if entry else None
            except (ValueError, TypeError, IndexError, KeyError):
                job_id = None
            if job_id in wanted:
                found.add(job_id)
        return found

    def _oldest_first(self, key: str) -> Iterator[bytes]:
        # Messages are pushed on the left and consumed from the right: read from the right end so the
        # oldest jobs (the ones looked for) are found early and the rest of a long queue is not read.
        # A message consumed between two reads shifts the list; one skipped here is at worst sent
        # twice, and a duplicate is harmless.
        stop = -1
        while True:
            chunk = self._client.lrange(key, stop - SCAN_CHUNK + 1, stop)
            yield from reversed(chunk)
            if len(chunk) < SCAN_CHUNK:
                return
            stop -= SCAN_CHUNK


def task_job_id(raw: bytes | str) -> str | None:
    """The job id of a `deepfake.analyze_job` message as kombu stores it in Redis, else None."""
    try:
        return message_job_id(json.loads(raw))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def message_job_id(message: dict) -> str | None:
    """The job id of a decoded task message (Celery protocol 2: the body is [args, kwargs, embed])."""
    if (message.get("headers") or {}).get("task") != ANALYZE_TASK:
        return None
    body = message["body"]
    if (message.get("properties") or {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args = json.loads(body)[0]
    return args[0] if args and isinstance(args[0], str) else None


def reap_interval_s(timeout_s: float) -> float:
    return max(0.5, min(timeout_s / 3.0, 30.0))


def connect(app: Celery) -> None:
    """Start a reaper when a worker of `app` is ready, stop it when the worker shuts down."""

    def start(sender: Any = None, **_: Any) -> None:
        if _app_of(sender) is not app or getattr(app, "deepfake_reaper", None) is not None:
            return
        app.deepfake_reaper = Reaper(app, app.deepfake_settings)
        app.deepfake_reaper.start()

    def stop(sender: Any = None, **_: Any) -> None:
        reaper = getattr(app, "deepfake_reaper", None)
        if reaper is not None:
            reaper.stop()
            app.deepfake_reaper = None

    def hand_back(sender: Any = None, **_: Any) -> None:
        reaper = getattr(app, "deepfake_reaper", None)
        if reaper is None:
            return
        # In a thread: this runs inside the SIGTERM handler, which may have interrupted the solo pool's
        # task mid-call on the same thread.
        worker = threading.Thread(target=_hand_back_quietly, args=(reaper, worker_process_names()),
                                  name="deepfake-hand-back")
        worker.start()
        worker.join(timeout=30)

    worker_ready.connect(start, weak=False)
    worker_shutting_down.connect(hand_back, weak=False)
    worker_shutdown.connect(stop, weak=False)


def worker_process_names() -> list[str]:
    """The `worker` names (host:pid, see WorkerContext.worker_name) of this process and its pool's children."""
    import psutil

    host = socket.gethostname()
    pids = [os.getpid()] + [child.pid for child in psutil.Process().children(recursive=True)]
    return [f"{host}:{pid}" for pid in pids]


def _hand_back_quietly(reaper: "Reaper", workers: list[str]) -> None:
    try:
        reaper.hand_back(workers)
    except Exception:  # the database or broker is away: the jobs go stale and the reapers requeue them
        log.warning("could not hand back running jobs at shutdown; they will be requeued once stale", exc_info=True)


def _app_of(sender: Any) -> Any:
    return getattr(sender, "app", None)
