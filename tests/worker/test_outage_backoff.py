"""Retries back off per outage, not per message: the rule on a test clock, then a real worker whose
PostgreSQL goes away for a while (through a proxy the test switches off; the shared server keeps running)."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import settings_env, wait_for
from shared.db.models import Job
from worker.tasks import OutageBackoff


def _log(tmp_path) -> str:
    path = tmp_path / "worker-w1.log"
    return path.read_text(errors="replace") if path.exists() else ""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_probe_per_step_while_the_outage_lasts():
    clock = Clock()
    backoff = OutageBackoff(base_s=2, cap_s=8, clock=clock)
    assert backoff.wait_s() is None  # no outage: every task goes ahead
    assert backoff.failed() == 2
    waits = [backoff.wait_s() for _ in range(100)]  # a hundred messages during the first step
    assert all(w is not None and 2 <= w <= 4 for w in waits)
    clock.now += 2
    assert backoff.wait_s() is None  # the probe
    assert backoff.wait_s() is not None  # the others wait for its outcome
    assert [backoff.failed() for _ in range(3)] == [4, 8, 8]  # doubling, capped
    clock.now += 8
    assert backoff.wait_s() is None
    backoff.succeeded()
    assert [backoff.wait_s() for _ in range(3)] == [None, None, None]


class SwitchableProxy:
    """A TCP forwarder to a real server that the test can switch off (it then closes every
    connection and refuses new ones) and on again; counts the connections refused."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.up = True
        self.refused = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def switch_off(self) -> None:
        with self._lock:
            self.up = False
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def switch_on(self) -> None:
        self.up = True

    def close(self) -> None:
        self.switch_off()
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self.up:
                    self.refused += 1
                    _close(client)
                    continue
                server = socket.create_connection(self._target)
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_outage_costs_a_few_probes_and_every_job_still_finishes_once(
        worker_settings, queue_job, send_analyze, start_worker, db_session_factory, short_clip, tmp_path):
    url = make_url(worker_settings.database_url)
    proxy = SwitchableProxy(url.port or 5432)
    settings = replace(worker_settings, database_url=url.set(port=proxy.port).render_as_string(hide_password=False))
    job_ids = [queue_job(short_clip) for _ in range(8)]
    try:
        proxy.switch_off()
        worker = start_worker(settings, env=settings_env(settings, REQUEUE_LOST_AFTER_S="600"))
        wait_for(lambda: " ready." in _log(tmp_path), timeout=120, what="the worker to start")
        for job_id in job_ids:
            send_analyze(job_id)
        outage_s = 12.0
        time.sleep(outage_s)
        proxy.switch_on()
        refused = proxy.refused

        def finished() -> list[Job] | None:
            with db_session_factory() as session:
                found = [session.get(Job, job_id) for job_id in job_ids]
            return found if all(job.status == "succeeded" for job in found) else None

        done = wait_for(finished, timeout=240, what="every job to finish after the outage")
    finally:
        proxy.close()
    assert [job.attempts for job in done] == [1] * len(job_ids)
    log = _log(tmp_path)
    probes, retries = log.count("outage probe"), log.count("retry: Retry in")
    print(f"{len(job_ids)} jobs, {outage_s:.0f}-s outage: {refused} connections refused, {probes} failed probes, "
          f"{retries} messages put back")
    assert worker.poll() is None
    # Per message this was at least one attempt per job per step; per outage it is one per step
    # (2 + 4 + 8 s: at most 4 in 12 s), plus the reaper's passes.
    assert probes <= 5, log[-3000:]
