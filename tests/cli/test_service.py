"""`deepfake serve | worker | db upgrade` as real processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from cli.service import free_port
from shared.db.models import TERMINAL_STATUSES
from shared.db.session import current_revision, head_revision
from tests.checkpoints import write_constant_checkpoint, write_seed_checkpoint
from tests.conftest import PUBLISHED_DETECTOR, REDIS_URL, REPO_ROOT, stop_process_group, wait_for
from tests.media import make_face_clip

TERMINAL = {status.value for status in TERMINAL_STATUSES}


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh machine: no REDIS_URL, no DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({"DATA_DIR": str(tmp_path / "var"), "WEIGHTS_DIR": str(tmp_path / "weights"),
                "DEVICE": "cpu", "PYTHONUNBUFFERED": "1", **extra})
    return env


def _deepfake(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_db_upgrade_creates_the_embedded_sqlite_schema(tmp_path):
    done = _deepfake("db", "upgrade", env=_bare_env(tmp_path))
    assert done.returncode == 0, done.stderr
    database = tmp_path / "var" / "deepfake.db"
    assert current_revision(f"sqlite:///{database}") == head_revision()
    again = _deepfake("db", "upgrade", env=_bare_env(tmp_path))
    assert again.returncode == 0, again.stderr


def test_worker_without_a_broker_says_so(tmp_path):
    done = _deepfake("worker", env=_bare_env(tmp_path))
    assert done.returncode == 1
    assert "REDIS_URL" in done.stderr and "Traceback" not in done.stderr


def test_web_without_a_broker_says_so(tmp_path):
    done = _deepfake("web", "--port", "0", env=_bare_env(tmp_path))
    assert done.returncode == 1
    assert "REDIS_URL" in done.stderr


def test_web_offers_gunicorn_for_deployments(tmp_path):
    done = _deepfake("web", "--help", env=_bare_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "--server {gunicorn,werkzeug}" in done.stdout
    assert "--workers" in done.stdout and "--threads" in done.stdout


def test_web_serves_with_gunicorn_then_stops_on_sigterm(tmp_path):
    port = free_port()
    env = _bare_env(tmp_path, REDIS_URL=REDIS_URL, DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}",
                    SECRET_KEY="shared-by-both-processes")
    with open(tmp_path / "web.log", "wb") as log:
        web = subprocess.Popen([sys.executable, "-m", "cli.main", "web", "--port", str(port), "--workers", "2",
                                "--threads", "2"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        response = wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="gunicorn to answer")
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        assert response.headers["Server"] == "gunicorn"
        workers = psutil.Process(web.pid).children()
        assert len(workers) == 2
        web.send_signal(signal.SIGTERM)
        assert web.wait(timeout=30) == 0, (tmp_path / "web.log").read_text()
        assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)
    finally:
        stop_process_group(web, sig=signal.SIGKILL)


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None


def _get_json(url: str) -> dict | None:
    try:
        response = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None
    return response.json() if response.ok else None


def _start_serve(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """`deepfake serve` with one worker on a fresh machine's environment, once it is ready."""
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "1"],
                             cwd=REPO_ROOT, env=_bare_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get_json(f"{base}/readyz"), timeout=60, what="serve to become ready")
    except BaseException:
        _stop_serve(serve)
        raise
    return serve, base


def _stop_serve(serve: subprocess.Popen) -> int:
    """Ctrl-C, as a person would; returns serve's exit status (and kills what it left, if anything)."""
    serve.send_signal(signal.SIGINT)
    code = serve.wait(timeout=60) if serve.poll() is None else serve.returncode
    stop_process_group(serve, sig=signal.SIGKILL)
    return code


def _run_job(base: str, clip: Path) -> dict:
    """Upload `clip` with fast settings and poll until the job ends; returns the job."""
    with open(clip, "rb") as video:
        response = requests.post(f"{base}/api/v1/jobs", timeout=30, files={"video": ("face.mp4", video, "video/mp4")},
                                 data={"sequence_length": "8", "face_detector": "none", "precision": "fp32"})
    assert response.status_code == 202, response.text
    job_url = f"{base}/api/v1/jobs/{response.json()['id']}"
    return wait_for(lambda: (lambda j: j if j and j["status"] in TERMINAL else None)(_get_json(job_url)),
                    timeout=150, what="the job to finish")


@pytest.mark.slow
def test_serve_runs_a_job_end_to_end_with_embedded_redis_and_sqlite_then_stops_cleanly(tmp_path):
    # Every window scores 0.1 <= threshold 0.5 - band 0.05: the whole-frame track and the video are REAL.
    write_constant_checkpoint(tmp_path / "weights", fake_probability=0.1, sequence_length=8)
    clip = make_face_clip(tmp_path / "face.mp4", width=160, height=120)
    serve, children = None, []
    try:
        serve, base = _start_serve(tmp_path)
        children = psutil.Process(serve.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert "redis-server" in names and "worker" in names
        job = _run_job(base, clip)
        assert job["status"] == "succeeded", job
        assert job["result"]["verdict"] == "REAL" and job["result"]["fake_probability"] == pytest.approx(0.1, abs=1e-3)
        assert (tmp_path / "var" / "deepfake.db").is_file()
        assert requests.get(f"{base}/readyz", timeout=5).json()["checks"]["workers"] == "ok"
    finally:
        code = _stop_serve(serve) if serve is not None else None
    output = (tmp_path / "serve.log").read_text()
    assert code == 0, output
    assert f"worker 0 started (log: {tmp_path / 'var' / 'logs' / 'worker-0.log'})" in output
    assert "no model checkpoint" not in output and "no RetinaFace weights" in output
    still_running = [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert still_running == []


def _worker_processes(serve_pid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.Process(serve_pid).children(recursive=False):
        try:
            if "worker" in " ".join(process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.slow
def test_serve_restarts_a_worker_that_dies_and_the_next_job_runs(tmp_path):
    write_seed_checkpoint(tmp_path / "weights")
    clip = make_face_clip(tmp_path / "face.mp4", width=160, height=120)
    serve = None
    try:
        serve, base = _start_serve(tmp_path)
        [first] = wait_for(lambda: _worker_processes(serve.pid) or None, timeout=30, what="the worker")
        os.killpg(first.pid, signal.SIGKILL)  # as the kernel's OOM killer would
        [second] = wait_for(lambda: [p for p in _worker_processes(serve.pid) if p.pid != first.pid] or None,
                            timeout=30, what="a restarted worker")
        assert second.pid != first.pid
        job = _run_job(base, clip)
        assert job["status"] == "succeeded", job
    finally:
        code = _stop_serve(serve) if serve is not None else None
    output = (tmp_path / "serve.log").read_text()
    assert code == 0, output
    assert "worker 0 exited with code -9; restarting it" in output


def test_supervisor_gives_up_on_a_worker_that_keeps_dying(tmp_path, monkeypatch, capsys):
    import cli.service as service
    from shared.settings import Settings

    started = []

    def start_failing_worker(settings, *, index, processes=1):
        process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
        process.wait()
        started.append(process)
        return process

    monkeypatch.setattr(service, "start_worker_process", start_failing_worker)
    settings = Settings(data_dir=tmp_path)
    workers = [start_failing_worker(settings, index=0)]
    supervisor = service.WorkerSupervisor(settings, workers)
    for _ in range(service.RESTARTS_ALLOWED + 3):
        supervisor.check_once()
    err = capsys.readouterr().err
    assert len(started) == 1 + service.RESTARTS_ALLOWED
    assert err.count("; restarting it") == service.RESTARTS_ALLOWED
    assert "not restarting it" in err and "worker-0.log" in err


def test_serve_warns_of_missing_weights_and_of_no_workers(tmp_path):
    from cli.service import startup_warnings
    from shared.settings import Settings

    settings = Settings(weights_dir=tmp_path / "weights", data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0")

    checkpoint, detector, no_workers = startup_warnings(settings, workers=0)

    assert "no model checkpoint" in checkpoint and "weights/README.md" in checkpoint
    assert "Haar fallback" in detector and "deepfake weights fetch" in detector
    assert "--workers 0" in no_workers and "'analysis'" in no_workers
    write_seed_checkpoint(settings.weights_dir)
    (settings.weights_dir / "retinaface-mobilenet0.25.onnx").symlink_to(PUBLISHED_DETECTOR)
    assert startup_warnings(settings, workers=1) == []


@pytest.mark.parametrize("command", [["worker"], ["web", "--port", "0"]])
def test_the_parts_of_a_deployment_refuse_a_private_database(tmp_path, command):
    """Started on its own (another machine), a web app or worker without DATABASE_URL would keep its jobs in
    a SQLite file no other machine sees: it refuses and says what to set."""
    done = _deepfake(*command, env=_bare_env(tmp_path, REDIS_URL=REDIS_URL, SECRET_KEY="set"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DATABASE_URL is not set" in done.stderr and "deepfake serve" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_gpu_worker_runs_gpu_jobs_analyses_at_once_and_a_cpu_worker_one(monkeypatch):
    from dataclasses import replace

    from cli.service import CommandError, worker_concurrency
    from shared.settings import Settings

    settings = Settings.from_env({"GPU_JOBS": "3"})
    assert worker_concurrency(None, replace(settings, device="cuda")) == 3
    assert worker_concurrency(None, replace(settings, device="cpu")) == 1
    assert worker_concurrency(4, replace(settings, device="cuda")) == 4
    assert Settings.from_env({}).gpu_jobs == 2
    with pytest.raises(CommandError, match="at least 1"):
        worker_concurrency(0, settings)
