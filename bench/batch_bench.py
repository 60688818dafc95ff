"""Overnight-batch benchmark: N short distinct files through the real service and W real workers.

    .venv/bin/python bench/batch_bench.py [--files 200] [--workers 2] [--database-url URL] [--redis-url URL]

The web app is served over HTTP (in this process, threaded Werkzeug); workers are real
`deepfake worker` processes (solo pool) consuming the interactive and batch lanes, as `serve` starts
them. The files are handed over the way a user would: `deepfake batch DIR --server URL` in a
subprocess, which uploads them one by one and follows the batch to its report. Half-way through, one
single upload is sent as a user would from the web page, to show how long an interactive job waits
while the batch queue is full. Each worker first runs one single job (model loaded) before anything is timed. Prints throughput, queue
latency (claim time − upload time) per item,
attempts, and the interactive job's wait, with the CPU's vector extensions. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import requests
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.engine_bench import _vector_features  # noqa: E402
from cli.service import stop_children  # noqa: E402
from shared.db.models import Job  # noqa: E402
from shared.db.session import make_engine, make_session_factory, upgrade  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.checkpoints import write_seed_checkpoint  # noqa: E402
from tests.media import make_face_clip  # noqa: E402
from web import create_app  # noqa: E402

ENGINE_ARGS = ["--sequence-length", "8", "--face-detector", "none", "--precision", "fp32"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (worker logs) and print it")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    base = f"bench-{secrets.token_hex(4)}"
    settings = replace(Settings(), weights_dir=work / "weights", data_dir=work / "data", redis_url=args.redis_url,
                       database_url=args.database_url or f"sqlite:///{work}/bench.db",
                       worker_queues=(base, f"{base}.batch"), device="cpu", owner="bench")
    try:
        print(f"CPU: {os.cpu_count()} logical cores, {_vector_features()}; {args.files} files, {args.workers} worker(s)", flush=True)
        folder = _make_files(work / "footage", args.files)
        write_seed_checkpoint(settings.weights_dir)
        upgrade(settings.effective_database_url)
        workers = [_start_worker(settings, work, i) for i in range(args.workers)]
        try:
            with _serve(settings) as url:
                _run(url, settings, folder, work, args.workers)
        finally:
            stop_children(workers)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _warm_up(url: str, settings: Settings, folder: Path, workers: int) -> None:
    """One single job per worker first, so every worker has loaded its model before anything is timed."""
    sessions = make_session_factory(make_engine(settings.effective_database_url))
    ids = []
    for clip in sorted(folder.iterdir())[:workers]:
        with open(clip, "rb") as video:
            ids.append(requests.post(f"{url}/api/v1/jobs", files={"video": (clip.name, video)}, timeout=60,
                                     data={"sequence_length": "8", "face_detector": "none", "precision": "fp32",
                                           "frame_stride": "3"}).json()["id"])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with sessions() as session:
            if all(session.get(Job, job_id).status in ("succeeded", "failed") for job_id in ids):
                return
        time.sleep(0.5)
    raise SystemExit("the workers did not warm up")


def _run(url: str, settings: Settings, folder: Path, work: Path, workers: int) -> None:
    _warm_up(url, settings, folder, workers)
    env = {**os.environ, "DEEPFAKE_SERVER": url}
    report = work / "report.json"
    started = time.perf_counter()
    batch = subprocess.Popen([sys.executable, "-m", "cli.main", "batch", str(folder), "--output", str(work / "r.csv"),
                              "--json-output", str(report), "--poll-interval", "1", *ENGINE_ARGS],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    interactive_wait = _interactive_wait_mid_batch(url, settings, folder)
    batch.wait()
    elapsed = time.perf_counter() - started
    rows = json.loads(report.read_text())["rows"]
    jobs = _jobs(settings, [row["job_id"] for row in rows if row.get("job_id")])
    waits = sorted((job.started_at - job.created_at).total_seconds() for job in jobs if job.started_at)
    ok = sum(row["status"] == "succeeded" for row in rows)
    print(f"{len(rows)} files handed over by `deepfake batch --server`: {ok} succeeded, "
          f"{len(rows) - ok} other; exit status {batch.returncode}")
    print(f"end to end (upload, analysis, report): {elapsed:.1f} s = {len(rows) / elapsed * 60:.1f} files/min")
    if waits:
        print(f"batch item queue latency (claimed − uploaded): p50 {statistics.median(waits):.1f} s, "
              f"p95 {waits[int(0.95 * (len(waits) - 1))]:.1f} s, max {waits[-1]:.1f} s")
    attempts = [job.attempts for job in jobs]
    print(f"attempts: total {sum(attempts)} for {len(attempts)} jobs, max {max(attempts, default=0)} per job")
    if interactive_wait is not None:
        wait, overtaken = interactive_wait
        print(f"a single upload sent mid-batch waited {wait:.2f} s for a worker, during which {overtaken} batch "
              f"item(s) started (p50 batch item waited {statistics.median(waits) if waits else float('nan'):.1f} s)")


def _interactive_wait_mid_batch(url: str, settings: Settings, folder: Path) -> tuple[float, int] | None:
    """Once half the batch is uploaded, submit one single job; return its claim − upload time and how many
    batch items were claimed meanwhile (at most one per worker if uploads go first)."""
    sessions = make_session_factory(make_engine(settings.effective_database_url))
    total = len(list(folder.iterdir()))
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        with sessions() as session:
            count = session.query(Job).filter(Job.batch_id.is_not(None)).count()
        if count >= total // 2:
            break
        time.sleep(0.5)
    clip = sorted(folder.iterdir())[0]
    posted = time.perf_counter()
    with open(clip, "rb") as video:
        response = requests.post(f"{url}/api/v1/jobs", files={"video": (clip.name, video)},
                                 data={"sequence_length": "8", "face_detector": "none", "precision": "fp32",
                                       "frame_stride": "2"}, timeout=60)
    job_id = response.json()["id"]
    print(f"(single upload {job_id}; its POST took {time.perf_counter() - posted:.2f} s)", flush=True)
    while time.monotonic() < deadline:
        with sessions() as session:
            job = session.get(Job, job_id)
            if job.started_at is not None:
                overtaken = session.query(Job).filter(Job.batch_id.is_not(None), Job.started_at > job.created_at,
                                                      Job.started_at < job.started_at).count()
                return (job.started_at - job.created_at).total_seconds(), overtaken
        time.sleep(0.1)
    return None


def _jobs(settings: Settings, ids: list[str]) -> list[Job]:
    sessions = make_session_factory(make_engine(settings.effective_database_url))
    with sessions() as session:
        return [session.get(Job, job_id) for job_id in ids]


def _make_files(folder: Path, count: int) -> Path:
    """`count` 1-s 160x120 clips whose bytes differ (a metadata tag), so none reuses another's result."""
    folder.mkdir(parents=True)
    for index in range(count):
        make_face_clip(folder / f"clip-{index:04d}.mp4", seconds=1.0, width=160, height=120,
                       extra_args=("-metadata", f"comment=bench {index}"))
    return folder


def _start_worker(settings: Settings, work: Path, index: int) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.effective_database_url,
           "WORKER_QUEUES": ",".join(settings.worker_queues), "DATA_DIR": str(settings.data_dir),
           "WEIGHTS_DIR": str(settings.weights_dir), "DEVICE": "cpu", "DEFAULT_OWNER": settings.owner}
    log = open(work / f"worker-{index}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--pool", "solo",
                             "--hostname", f"batch-bench-{index}@%h"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    app = create_app(settings)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per poll would bury the figures
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
