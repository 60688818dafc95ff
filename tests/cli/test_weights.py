"""`deepfake weights list|fetch|verify` as a user runs it, fetching from a local HTTP server."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MOBILENET_SIZE = 1789735  # the published size of detection_mobilenet0.25_Final.pth


def deepfake(*args: str, weights_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if weights_dir is not None:
        env["WEIGHTS_DIR"] = str(weights_dir)
    return subprocess.run([sys.executable, "-m", "cli", "weights", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_list_shows_known_files_and_what_is_installed(tmp_path):
    (tmp_path / "Resnet50_Final.pth").write_bytes(b"x")
    result = deepfake("list", weights_dir=tmp_path)  # folder from WEIGHTS_DIR
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("* retinaface-resnet50 ") for line in lines)
    assert any(line.startswith("  retinaface-mobilenet0.25 ") for line in lines)
    assert "model_93_acc_100_frames_final_data.pt" in result.stdout


def test_fetch_refuses_a_file_whose_checksum_does_not_match(tmp_path, file_server):
    base_url, folder = file_server
    (folder / "detection_Resnet50_Final.pth").write_bytes(b"not the real checkpoint" * 100)
    weights = tmp_path / "weights"
    result = deepfake("fetch", "retinaface-resnet50", "--base-url", base_url, "--weights-dir", str(weights))
    assert result.returncode != 0
    assert "[checksum_mismatch]" in result.stderr and "Traceback" not in result.stderr
    assert list(weights.iterdir()) == []


def test_fetch_of_an_unverifiable_file_needs_allow_unverified(tmp_path, file_server):
    base_url, folder = file_server
    payload = os.urandom(MOBILENET_SIZE)
    digest = hashlib.sha256(payload).hexdigest()
    (folder / "detection_mobilenet0.25_Final.pth").write_bytes(payload)
    weights = tmp_path / "weights"
    args = ("fetch", "retinaface-mobilenet0.25-pth", "--base-url", base_url, "--weights-dir", str(weights))

    refused = deepfake(*args)
    assert refused.returncode != 0 and "--allow-unverified" in refused.stderr and digest in refused.stderr
    assert list(weights.iterdir()) == []

    allowed = deepfake(*args, "--allow-unverified")
    assert allowed.returncode == 0, allowed.stderr
    assert (weights / "mobilenet0.25_Final.pth").read_bytes() == payload
    assert digest in allowed.stderr


def test_fetch_of_a_seed_checkpoint_explains_its_source(tmp_path):
    result = deepfake("fetch", "seed-100-frames", "--weights-dir", str(tmp_path))
    assert result.returncode != 0 and "no download URL" in result.stderr


def test_verify_reports_statuses_and_fails_on_a_mismatch(tmp_path):
    (tmp_path / "mobilenet0.25_Final.pth").write_bytes(b"x")
    (tmp_path / "notes.bin").write_bytes(b"y")
    ok = deepfake("verify", "--weights-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "unverified" in ok.stdout and "unknown file" in ok.stdout
    (tmp_path / "Resnet50_Final.pth").write_bytes(b"corrupt")
    bad = deepfake("verify", "--weights-dir", str(tmp_path))
    assert bad.returncode == 1 and "checksum mismatch" in bad.stdout
