"""`deepfake dataset prepare | train | evaluate | export` chained as a user would, ending with
`deepfake analyze --weights NAME` picking up the exported model."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from shared.model.checkpoints import load_model
from tests.checkpoints import write_seed_checkpoint
from tests.media import make_face_clip, write_video
from tests.shared.model.training.synthetic import FACE_BOXES, swapped_photo

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--backbone", "tiny", "--hidden-size", "16", "--sequence-length", "4", "--input-size", "32",
        "--workers", "0", "--device", "cpu", "--batch-size", "2"]


def _swapped_video(path: Path, *, target: str, donor: str, count: int = 20) -> Path:
    """A drifting close-up of a face-swapped photo, framed like tests.media's real-face clips."""
    x, y, w, h = FACE_BOXES[target]
    side = int(1.4 * w)
    left, top = max(0, x + w // 2 - side // 2), max(0, y + h // 2 - side // 2)
    crop = swapped_photo(target, donor)[top : top + side, left : left + side]
    tile = np.asarray(Image.fromarray(crop).resize((200, 200), Image.BILINEAR))
    frames = np.full((count, 240, 320, 3), 40, dtype=np.uint8)
    for i in range(count):
        shift = 60 + int(6 * np.sin(2 * np.pi * i / count))
        frames[i, 20:220, shift : shift + 200] = tile
    return write_video(path, frames, fps=10)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four labelled videos (two REAL, two FAKE) prepared with two worker processes."""
    root = tmp_path_factory.mktemp("cli")
    src = root / "videos"
    src.mkdir()
    make_face_clip(src / "real_a.mp4", photos=("astronaut",))
    make_face_clip(src / "real_g.mp4", photos=("grace_hopper",))
    _swapped_video(src / "fake_a.mp4", target="astronaut", donor="grace_hopper")
    _swapped_video(src / "fake_g.mp4", target="grace_hopper", donor="astronaut")
    labels = root / "labels.csv"
    labels.write_text("file,label,origin\nreal_a.mp4,REAL,x\nreal_g.mp4,REAL,x\nfake_a.mp4,FAKE,x\nfake_g.mp4,FAKE,x\n")
    code = main(["dataset", "prepare", str(src), str(labels), str(root / "data"), "--size", "48", "--jobs", "2",
                 "--face-detector", "opencv", "--detect-every", "2", "--max-frames", "16", "--min-track-frames", "6"])
    assert code == 0
    return root


def test_prepare_writes_a_manifest_of_face_clips(prepared: Path) -> None:
    with (prepared / "data" / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["source"] for r in rows) == ["fake_a.mp4", "fake_g.mp4", "real_a.mp4", "real_g.mp4"]
    frames = [int(r["frames"]) for r in rows]
    assert all(6 <= n <= 16 for n in frames) and 16 in frames  # --min-track-frames, --max-frames
    assert {r["source"]: r["label"] for r in rows}["fake_g.mp4"] == "FAKE"
    assert (prepared / "data" / "skipped.csv").read_text().strip() == "file,label,reason,message"


def test_train_evaluate_export_then_analyze_by_name(prepared: Path, tmp_path: Path, capsys) -> None:
    manifest = prepared / "data" / "manifest.csv"
    run = tmp_path / "run"
    assert main(["train", str(manifest), "--out", str(run), "--epochs", "1", "--val-fraction", "0.5", *TINY]) == 0
    assert "best epoch 1" in capsys.readouterr().out
    for name in ("best.pt", "state.pt", "train.csv", "val.csv", "history.json", "curves.png", "val_predictions.csv"):
        assert (run / name).is_file(), name

    assert main(["evaluate", str(run / "best.pt"), str(manifest), "--out", str(tmp_path / "eval"),
                 "--device", "cpu", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["count"] == 4 and figures["fakes"] == 2
    assert "| ROC-AUC |" in (tmp_path / "eval" / "report.md").read_text()

    weights = tmp_path / "weights"
    assert main(["export", str(run), "--name", "mine", "--weights-dir", str(weights), "--threshold", "0.42"]) == 0
    assert "CPU runtime prepared: " in capsys.readouterr().out
    assert list((weights / ".openvino-cache").glob("*.xml"))  # the engine's converted graph, ready for analyze
    assert main(["export", str(run), "--name", "mine", "--weights-dir", str(weights)]) == 2  # no silent overwrite
    _, spec = load_model(weights / "mine.pt")
    assert spec.threshold == pytest.approx(0.42)

    done = subprocess.run(
        [sys.executable, "-m", "cli", "analyze", str(prepared / "videos" / "real_a.mp4"), "--weights", "mine",
         "--json", "--face-detector", "opencv", "--device", "cpu", "--precision", "fp32"],
        env=dict(os.environ, WEIGHTS_DIR=str(weights)), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"]["name"] == "mine"
    assert result["model"]["threshold"] == pytest.approx(0.42)


def test_fine_tune_from_a_project_checkpoint(prepared: Path, tmp_path: Path) -> None:
    manifest = prepared / "data" / "manifest.csv"
    assert main(["train", str(manifest), "--out", str(tmp_path / "a"), "--epochs", "1", "--val-fraction", "0.5", *TINY]) == 0
    assert main(["train", str(manifest), "--out", str(tmp_path / "b"), "--epochs", "1", "--val-fraction", "0.5",
                 "--init", str(tmp_path / "a" / "best.pt"), *TINY]) == 0
    _, spec = load_model(tmp_path / "b" / "best.pt")
    assert spec.training["init"] == str(tmp_path / "a" / "best.pt")
    assert spec.backbone == "tiny" and spec.hidden_size == 16


def test_seed_checkpoint_is_evaluated_the_same_way(prepared: Path, tmp_path: Path, capsys) -> None:
    seed = write_seed_checkpoint(tmp_path / "weights", sequence_length=4)
    assert main(["evaluate", str(seed), str(prepared / "data" / "manifest.csv"), "--out", str(tmp_path / "eval"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "4 clips (2 FAKE, 2 REAL)" in out
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "seed-resnext-lstm" in report and "sampling `first`" in report


def test_train_refuses_a_manifest_with_one_label(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("clip,source,track,frames,label\na.avi,a.mp4,0,8,REAL\nb.avi,b.mp4,0,8,REAL\n")
    assert main(["train", str(manifest), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert "needs clips of both labels" in capsys.readouterr().err
