"""`deepfake analyze` as a user runs it: a real process, its stdout, stderr and exit status."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkpoints import write_constant_checkpoint
from tests.media import make_face_clip

ROOT = Path(__file__).resolve().parents[2]
FAKE_P = 0.9  # every window's score: any clip with a face is FAKE (0.9 >= threshold 0.5 + band 0.05)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    write_constant_checkpoint(directory, fake_probability=FAKE_P, sequence_length=4)
    return directory


def deepfake(*args, weights_dir: Path, cwd: Path = ROOT):
    env = dict(os.environ, WEIGHTS_DIR=str(weights_dir))
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_json_output_follows_the_contract(tmp_path, weights_dir):
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=1.0, fps=10, width=320, height=240)
    done = deepfake("analyze", str(clip), "--json", "--face-detector", "opencv", "--precision", "fp32",
                    "--device", "cpu", "--sequence-length", "4", "--detect-every", "3", "--plot",
                    str(tmp_path / "timeline.png"), "--artifacts-dir", str(tmp_path / "art"), weights_dir=weights_dir)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert set(data) >= {"verdict", "fake_probability", "reasons", "warnings", "video", "frames_analyzed", "model",
                         "params", "tracks", "timings"}
    assert data["verdict"] == "FAKE" and data["fake_probability"] == pytest.approx(FAKE_P, abs=1e-3)
    assert set(data["video"]) >= {"frames", "fps", "duration_s", "width", "height", "sha256"}
    assert data["video"]["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    checkpoint = next(weights_dir.glob("*.pt"))
    assert data["model"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert data["model"]["kind"] == "seed-resnext-lstm" and data["model"]["sequence_length"] == 4
    for key in ("sequence_length", "window_stride", "frame_stride", "detect_every", "face_detector", "device",
                "precision", "batch_size"):
        assert key in data["params"]
    assert data["params"]["detect_every"] == 3
    [track] = data["tracks"]
    assert set(track) >= {"id", "fake_probability", "first_frame", "last_frame", "frames", "windows"}
    assert set(track["windows"][0]) == {"start_frame", "end_frame", "start_s", "end_s", "fake_probability"}
    assert data["timings"]["total_s"] > 0
    assert (tmp_path / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert len(list((tmp_path / "art").glob("*.png"))) >= 2


def test_readable_summary_by_default(tmp_path, weights_dir):
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=0.6, fps=10, width=160, height=120)
    done = deepfake("analyze", str(clip), "--face-detector", "none", "--precision", "fp32", "--heatmaps", "0",
                    "--artifacts-dir", str(tmp_path / "none"), weights_dir=weights_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Verdict: FAKE")
    assert "track 0:" in done.stdout and "face 0" not in done.stdout  # the web's word for a face track
    assert not list((tmp_path / "none").glob("*.png"))


@pytest.mark.parametrize("content, code", [
    (b"", "not_a_video"),
    (b"hello, I am text" * 50, "not_a_video"),
])
def test_unusable_input_is_one_line_without_traceback(tmp_path, weights_dir, content, code):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    done = deepfake("analyze", str(path), "--json", weights_dir=weights_dir)
    assert done.returncode != 0
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert code in done.stderr


def test_missing_file_and_missing_weights(tmp_path, weights_dir):
    done = deepfake("analyze", str(tmp_path / "nope.mp4"), weights_dir=weights_dir)
    assert done.returncode != 0 and "video_not_found" in done.stderr and "Traceback" not in done.stderr
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=0.3, fps=10, width=160, height=120)
    done = deepfake("analyze", str(clip), weights_dir=tmp_path / "empty")
    assert done.returncode != 0 and "weights_not_found" in done.stderr and "Traceback" not in done.stderr
    assert "deepfake weights fetch" in done.stderr and "pass --weights" not in done.stderr


@pytest.mark.parametrize("weights", ["/etc/passwd", "/dev/null"])
def test_a_file_that_is_not_a_checkpoint_is_a_one_line_typed_error(tmp_path, weights_dir, weights):
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=0.3, fps=10, width=160, height=120)
    done = deepfake("analyze", str(clip), "--weights", weights, weights_dir=weights_dir)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "checkpoint_invalid" in done.stderr or "weights_not_found" in done.stderr
