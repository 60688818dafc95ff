import csv
import json
from pathlib import Path

import numpy as np
import pytest

from shared.model.training.clips import read_clip
from shared.model.training.dataset import PrepareOptions, prepare_dataset
from shared.model.training.errors import LabelFileError
from shared.model.training.manifest import read_manifest
from tests.media import make_face_clip, write_video

OPTIONS = PrepareOptions(size=64, face_detector="opencv", detect_every=2, min_track_frames=5)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    src = tmp_path_factory.mktemp("videos")
    make_face_clip(src / "real_one.mp4", photos=("astronaut",))
    (src / "fakes").mkdir()
    make_face_clip(src / "fakes" / "two_faces.mp4", photos=("astronaut", "grace_hopper"))
    write_video(src / "empty_room.mp4", np.full((20, 240, 320, 3), 90, dtype=np.uint8), fps=10)
    labels = src / "labels.csv"
    labels.write_text("real_one.mp4,REAL\nfakes/two_faces.mp4,FAKE\nempty_room.mp4,REAL\ngone.mp4,FAKE\n")
    return src, labels


def _skipped(out: Path) -> dict[str, str]:
    with (out / "skipped.csv").open(newline="") as handle:
        return {row["file"]: row["reason"] for row in csv.DictReader(handle)}


def test_prepare_cuts_one_clip_per_face_track(source, tmp_path: Path) -> None:
    src, labels = source
    summary = prepare_dataset(src, labels, tmp_path, options=OPTIONS, progress=False)
    records = read_manifest(summary.manifest)
    by_video = {}
    for record in records:
        by_video.setdefault(record.source, []).append(record)
    assert sorted(by_video) == ["fakes/two_faces.mp4", "real_one.mp4"]
    assert len(by_video["real_one.mp4"]) == 1
    assert len(by_video["fakes/two_faces.mp4"]) == 2  # two people, two tracks
    assert {r.label for r in by_video["fakes/two_faces.mp4"]} == {"FAKE"}
    for record in records:
        frames = read_clip(record.clip)
        assert frames.shape == (record.frames, 64, 64, 3)
        assert record.frames >= 5
    assert _skipped(tmp_path) == {"empty_room.mp4": "no_face", "gone.mp4": "missing"}
    assert summary.processed == 3 and summary.already_done == 0


def test_second_run_skips_finished_videos(source, tmp_path: Path) -> None:
    src, labels = source
    prepare_dataset(src, labels, tmp_path, options=OPTIONS, progress=False)
    clips = sorted((tmp_path / "clips").rglob("*.avi"))
    stamps = {p: p.stat().st_mtime_ns for p in clips}
    again = prepare_dataset(src, labels, tmp_path, options=OPTIONS, progress=False)
    assert (again.processed, again.already_done) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in sorted((tmp_path / "clips").rglob("*.avi"))} == stamps
    assert again.clips == 3

    # A video whose record is gone (an interrupted run) is the only one done again.
    record = tmp_path / "records" / "fakes__two_faces.mp4.json"
    assert json.loads(record.read_text())["status"] == "ok"
    record.unlink()
    third = prepare_dataset(src, labels, tmp_path, options=OPTIONS, progress=False)
    assert (third.processed, third.already_done) == (1, 2)
    assert third.clips == 3
    assert not list(tmp_path.rglob("*.partial*"))


def test_bad_label_file_fails_before_any_work(source, tmp_path: Path) -> None:
    src, _ = source
    bad = tmp_path / "bad.csv"
    bad.write_text("real_one.mp4,REAL\nx.mp4,UNSURE\n")
    with pytest.raises(LabelFileError, match=":2:"):
        prepare_dataset(src, bad, tmp_path / "out", options=OPTIONS, progress=False)
    assert not (tmp_path / "out" / "manifest.csv").exists()
