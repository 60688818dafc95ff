"""Job service benchmark: enqueue-to-start latency and jobs per minute with 1 and 2 workers.

    .venv/bin/python bench/service_bench.py [--redis-url URL] [--database-url URL] [--jobs 12]

Without --redis-url it starts the embedded redis-server as `deepfake serve` does; without
--database-url it uses a SQLite file in a temporary folder. Workers are real `deepfake worker`
processes (solo pool); each is warmed up (model loaded) before anything is timed. The latency is
`started_at - created_at` of each job: from the moment the upload is recorded and the task sent
to the moment a worker claims it. Prints the figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cli.service import start_embedded_redis, stop_children  # noqa: E402
from shared.db import jobs  # noqa: E402
from shared.db.models import TERMINAL_STATUSES, Job  # noqa: E402
from shared.lanes import ANALYZE_TASK  # noqa: E402
from shared.db.session import make_engine, make_session_factory, upgrade  # noqa: E402
from tests.checkpoints import write_seed_checkpoint  # noqa: E402
from tests.media import make_face_clip  # noqa: E402

PARAMS = {"sequence_length": 8, "face_detector": "none", "precision": "fp32", "heatmaps": 0}
TERMINAL = {status.value for status in TERMINAL_STATUSES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--database-url")
    parser.add_argument("--jobs", type=int, default=12, help="small videos per throughput run")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="service-bench-"))
    children: list[subprocess.Popen] = []
    try:
        redis_url = args.redis_url
        if not redis_url:
            process, redis_url = start_embedded_redis(work / "redis")
            children.append(process)
        bench = Bench(work=work, redis_url=redis_url, database_url=args.database_url or f"sqlite:///{work}/bench.db")
        for count in (int(n) for n in args.workers.split(",")):
            bench.run(workers=count, jobs_count=args.jobs)
        bench.close()
    finally:
        stop_children(children)
        shutil.rmtree(work, ignore_errors=True)
    return 0


class Bench:
    def __init__(self, *, work: Path, redis_url: str, database_url: str) -> None:
        self.work, self.redis_url, self.database_url = work, redis_url, database_url
        upgrade(database_url)
        self.sessions = make_session_factory(make_engine(database_url))
        self.client = Celery("bench", broker=redis_url, set_as_current=False)
        write_seed_checkpoint(work / "weights")
        (work / "data" / "uploads").mkdir(parents=True, exist_ok=True)
        self.clip = make_face_clip(work / "data" / "uploads" / "clip.mp4", seconds=1.0, width=160, height=120)

    def run(self, *, workers: int, jobs_count: int) -> None:
        queue = f"analysis-bench-{secrets.token_hex(4)}"
        processes = [self._start_worker(queue, i) for i in range(workers)]
        try:
            self._wait_all([self._submit(queue) for _ in range(workers)], timeout=600)  # warm-up: model loads
            latency = self._latencies(queue, count=5)
            started = time.perf_counter()
            self._wait_all([self._submit(queue) for _ in range(jobs_count)], timeout=1800)
            elapsed = time.perf_counter() - started
        finally:
            stop_children(processes)
        print(f"workers={workers}: enqueue→start latency p50 {statistics.median(latency) * 1000:.0f} ms, "
              f"max {max(latency) * 1000:.0f} ms (idle worker, {len(latency)} jobs); "
              f"{jobs_count} jobs of 1 s 160x120 in {elapsed:.1f} s = {jobs_count / elapsed * 60:.1f} jobs/min",
              flush=True)

    def _latencies(self, queue: str, *, count: int) -> list[float]:
        values = []
        for _ in range(count):
            job_id = self._submit(queue)
            [job] = self._wait_all([job_id], timeout=600)
            values.append((job.started_at - job.created_at).total_seconds())
        return values

    def _submit(self, queue: str) -> str:
        data = self.clip.read_bytes()
        with self.sessions() as session:
            job = jobs.create_job(session=session, owner="bench", params=PARAMS, upload_name="clip.mp4",
                                  stored_name=self.clip.name, upload_size=len(data),
                                  upload_sha256=hashlib.sha256(data).hexdigest())
            session.commit()
        self.client.send_task(ANALYZE_TASK, args=[job.id], queue=queue)
        return job.id

    def _wait_all(self, job_ids: list[str], *, timeout: float) -> list[Job]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.sessions() as session:
                found = [session.get(Job, job_id) for job_id in job_ids]
            if all(job.status in TERMINAL for job in found):
                failed = [job for job in found if job.status != "succeeded"]
                if failed:
                    raise SystemExit(f"job {failed[0].id} {failed[0].status}: {failed[0].error_message}")
                return found
            time.sleep(0.05)
        raise SystemExit("timed out waiting for jobs")

    def _start_worker(self, queue: str, index: int) -> subprocess.Popen:
        env = {**os.environ, "REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url, "WORKER_QUEUES": queue,
               "DATA_DIR": str(self.work / "data"), "WEIGHTS_DIR": str(self.work / "weights"), "DEVICE": "cpu"}
        log = open(self.work / f"worker-{queue}-{index}.log", "wb")
        return subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--pool", "solo",
                                 "--hostname", f"bench-{index}-{queue}@%h"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def close(self) -> None:
        self.client.close()


if __name__ == "__main__":
    sys.exit(main())
