"""Start-up benchmark: how long a 1-second clip takes through `deepfake serve`, cold and warm.

Runs the real service (embedded Redis, SQLite, one worker) in a temporary DATA_DIR with a
seed-layout checkpoint (random weights: the compute is the real model's) and the published
RetinaFace from weights/. Each figure is upload → `succeeded` as a client sees it (POST, then
polling GET every 50 ms), for:

1. the very first job on a fresh machine (empty model cache: conversion, quantization, compilation);
2. later jobs on the same, warm service;
3. the first job after restarting the service (the model cache is warm, the process is new; the
   worker preloads the default model at start, and the job is sent after the service is ready).

    .venv/bin/python bench/first_job_bench.py [--jobs 3] [--port 8765]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DETECTOR = "retinaface-mobilenet0.25.onnx"
POLL_S = 0.05


def prepare(folder: Path) -> tuple[dict[str, str], Path]:
    """Weights (seed checkpoint + published detector), data folder and a 1-second clip of a real face."""
    from tests.checkpoints import write_seed_checkpoint
    from tests.media import make_face_clip

    weights = folder / "weights"
    write_seed_checkpoint(weights, sequence_length=20)
    source = ROOT / "weights" / DETECTOR
    if not source.exists():
        raise SystemExit(f"{source} is missing: run `.venv/bin/deepfake weights fetch retinaface-mobilenet0.25`")
    shutil.copy(source, weights / DETECTOR)
    clip = make_face_clip(folder / "clip.mp4", seconds=1.0, fps=30.0, width=1280, height=720)
    env = {**os.environ, "WEIGHTS_DIR": str(weights), "DATA_DIR": str(folder / "data")}
    for name in ("REDIS_URL", "DATABASE_URL", "MODEL_CACHE_DIR"):
        env.pop(name, None)
    return env, clip


def start_service(env: dict[str, str], *, port: int, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    process = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port), "--workers", "1"],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok:
                return process
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"serve exited ({process.returncode}); see {log}")
        time.sleep(0.2)
    raise SystemExit(f"serve was not ready in 120 s; see {log}")


def stop_service(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def one_job(clip: Path, *, port: int) -> tuple[float, dict]:
    """Seconds from the upload's first byte to a terminal status, and the final job document."""
    from shared.db.models import TERMINAL_STATUSES

    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    with clip.open("rb") as video:
        answer = requests.post(f"{base}/api/v1/jobs", files={"video": (clip.name, video, "video/mp4")},
                               timeout=60)
    answer.raise_for_status()
    location = answer.headers["Location"]
    while True:
        job = requests.get(base + location if location.startswith("/") else location, timeout=10).json()
        if job["status"] in {status.value for status in TERMINAL_STATUSES}:
            return time.perf_counter() - start, job
        time.sleep(POLL_S)


def report(label: str, seconds: float, job: dict) -> None:
    result = job.get("result") or {}
    timings = result.get("timings", {})
    detector = result.get("params", {}).get("face_detector", "?")
    print(f"   {label:<46} {seconds:6.2f} s   status {job['status']}, detector {detector}, "
          f"engine load_s {timings.get('load_s', float('nan')):.2f}, analysis total_s "
          f"{timings.get('total_s', float('nan')):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3, help="warm jobs to time")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    from bench.engine_bench import _vector_features

    print(f"CPU: {os.cpu_count()} logical cores, {_vector_features()}; 1-second 1280x720 clip, one face")
    with tempfile.TemporaryDirectory(prefix="first-job-") as tmp:
        folder = Path(tmp)
        env, clip = prepare(folder)
        log = folder / "serve.log"
        service = start_service(env, port=args.port, log=log)
        try:
            report("first job, fresh machine (empty model cache)", *one_job(clip, port=args.port))
            for i in range(args.jobs):
                report(f"warm service, job {i + 2}", *one_job(clip, port=args.port))
        finally:
            stop_service(service)
        service = start_service(env, port=args.port, log=log)
        try:
            report("first job after a restart (warm model cache)", *one_job(clip, port=args.port))
        finally:
            stop_service(service)


if __name__ == "__main__":
    main()
