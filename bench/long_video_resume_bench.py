"""A long video whose worker is killed twice still finishes, resuming each time, with flat memory.

    .venv/bin/python bench/long_video_resume_bench.py [--minutes 30] [--height 720] [--database-url URL]

One real `deepfake worker` (solo pool, RetinaFace, default precision) at a time on a job of a long clip of
a real face: SIGKILLed at a third and at two thirds of the frames, each time a new worker takes the job
over once the reaper finds it stale (HEARTBEAT_TIMEOUT_S=10) and resumes from the recorded features.
Prints each attempt's frames, wall time and peak RSS, the crops the last attempt replayed, and the
total, with the CPU's vector extensions. Asserts nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.engine_bench import _vector_features, install_detector, make_clip, make_weights  # noqa: E402
from celery import Celery  # noqa: E402
from shared.db import jobs  # noqa: E402
from shared.db.models import Job  # noqa: E402
from shared.db.session import make_engine, make_session_factory, upgrade  # noqa: E402
from shared.lanes import ANALYZE_TASK  # noqa: E402

PARAMS = {"sequence_length": 20, "heatmaps": 0, "preview": False}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="long-resume-"))
    try:
        run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run(work: Path, args: argparse.Namespace) -> None:
    queue = f"long-resume-{secrets.token_hex(4)}"
    database_url = args.database_url or f"sqlite:///{work}/bench.db"
    upgrade(database_url)
    sessions = make_session_factory(make_engine(database_url))
    clip = make_clip(work / "clip.mp4", minutes=args.minutes, width=args.height * 16 // 9, height=args.height)
    make_weights(work / "weights", sequence_length=20)
    install_detector(work / "weights")
    (work / "data" / "uploads").mkdir(parents=True)
    shutil.copy(clip, work / "data" / "uploads" / "long.mp4")
    env = {**os.environ, "REDIS_URL": args.redis_url, "DATABASE_URL": database_url, "WORKER_QUEUES": queue,
           "DATA_DIR": str(work / "data"), "WEIGHTS_DIR": str(work / "weights"), "DEVICE": "cpu",
           "HEARTBEAT_TIMEOUT_S": "10", "JOB_MAX_ATTEMPTS": "5"}
    with sessions() as session:
        job = jobs.create_job(session=session, owner="bench", params=PARAMS, upload_name="long.mp4",
                              stored_name="long.mp4", upload_size=clip.stat().st_size,
                              upload_sha256=hashlib.sha256(clip.read_bytes()).hexdigest())
        session.commit()
        job_id = job.id
    client = Celery("bench", broker=args.redis_url, set_as_current=False)
    client.send_task(ANALYZE_TASK, args=[job_id], queue=queue)
    print(f"CPU: {os.cpu_count()} logical cores, {_vector_features()}; {args.minutes:g} min of {args.height}p",
          flush=True)
    started = time.perf_counter()
    for attempt, kill_at in enumerate((1 / 3, 2 / 3, None), start=1):
        worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--pool", "solo", "--hostname",
                                   f"long-{attempt}@%h"], cwd=REPO, env=env, stdout=open(work / f"w{attempt}.log", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        frames, peak, seconds = follow(sessions, job_id, worker, attempt=attempt, kill_at=kill_at)
        print(f"attempt {attempt}: {'killed' if kill_at else 'finished'} at frame {frames} after {seconds:.0f} s, "
              f"worker peak RSS {peak / 2**20:.0f} MiB", flush=True)
        if kill_at:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        else:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)
    with sessions() as session:
        done = session.get(Job, job_id)
    resumed = (done.result or {}).get("resumed", {})
    print(f"job {done.status} after {done.attempts} attempts in {time.perf_counter() - started:.0f} s; "
          f"the last attempt replayed {resumed.get('crops_reused', 0)} recorded crops; "
          f"verdict {done.verdict}, {done.result['frames_analyzed'] if done.result else 0} frames")
    client.close()


def follow(sessions, job_id: str, worker: subprocess.Popen, *, attempt: int, kill_at: float | None):
    """Sample the worker's RSS until the job's attempt `attempt` passes `kill_at` of its frames (or ends)."""
    peak, started = 0, time.perf_counter()
    process = psutil.Process(worker.pid)
    while True:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        with sessions() as session:
            job = session.get(Job, job_id)
        if job.job_status.is_terminal:
            return job.progress_done, peak, time.perf_counter() - started
        if (kill_at and job.attempts == attempt and job.progress_total
                and job.progress_done >= kill_at * job.progress_total):
            return job.progress_done, peak, time.perf_counter() - started
        time.sleep(0.5)
    return 0, peak, time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
