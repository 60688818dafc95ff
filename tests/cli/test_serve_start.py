"""What `deepfake serve` says at start, read from a real run on a fresh machine's environment: where to go,
where the worker logs are, which face detector and checkpoints are installed, and a warning when none is."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import requests

from cli.service import free_port
from tests.conftest import REPO_ROOT, stop_process_group, wait_for
from tests.cli.test_service import _bare_env

SEED_NAME = "model_87_acc_20_frames_final_data.pt"


def _serve_until_it_answers(tmp_path: Path, *, workers: int) -> tuple[str, dict]:
    """Run serve until /readyz answers; its console output (stdout and stderr) and the /readyz document."""
    port = free_port()
    log_path = tmp_path / "serve.out"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers",
                                  str(workers)], cwd=REPO_ROOT, env=_bare_env(tmp_path), stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = wait_for(lambda: _readyz(port), timeout=60, what="serve to answer /readyz")
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        finally:
            stop_process_group(serve, sig=signal.SIGKILL)
    return log_path.read_text(), ready


def _readyz(port: int) -> dict | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
    except requests.ConnectionError:
        return None


def test_with_nothing_installed_it_says_where_to_go_and_warns_that_jobs_will_fail(tmp_path):
    (tmp_path / "weights").mkdir()
    out, ready = _serve_until_it_answers(tmp_path, workers=1)
    port = out.split("serving on http://127.0.0.1:", 1)[1].split(":", 1)[0]

    assert f"open it in a browser to upload a video; API reference at http://127.0.0.1:{port}/api-docs" in out
    assert f"worker 0 started (log: {tmp_path / 'var' / 'logs' / 'worker-0.log'})" in out
    assert "face detector: OpenCV's Haar fallback (no RetinaFace weights)" in out
    assert f"checkpoints in {tmp_path / 'weights'}: none" in out
    assert "warning: no model checkpoint" in out and "every job will fail" in out
    assert "warning: no RetinaFace weights" in out
    assert ready["detector"]["name"] == "opencv" and "Haar" in ready["detector"]["note"]
    assert ready["checkpoints"] == [] and "model" in ready["error"]["down"]


def test_with_weights_installed_it_names_them_and_does_not_warn(tmp_path, published_detector_weights):
    weights = tmp_path / "weights"
    weights.mkdir()
    detector = published_detector_weights.name
    shutil.copy(published_detector_weights, weights / detector)
    (weights / SEED_NAME).write_bytes(b"named, not loaded: serve only lists it")
    (weights / "mine.pth").write_bytes(b"x")
    out, ready = _serve_until_it_answers(tmp_path, workers=0)

    assert f"face detector: RetinaFace ({detector})" in out
    assert f"checkpoints in {weights}: mine.pth, {SEED_NAME}" in out
    assert "no model checkpoint" not in out and "no RetinaFace weights" not in out
    assert "--workers 0: jobs wait" in out  # still explained
    assert ready["detector"] == {"name": "retinaface", "weights": [detector], "source": "web machine"}  # no worker
    assert ready["checkpoints"] == ["mine.pth", SEED_NAME] and ready["checks"]["model"] == "ok"
