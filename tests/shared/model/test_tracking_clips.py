"""Face tracks a person can trust, measured on clips whose true face boxes are known (tests/tracks.py).

The published RetinaFace runs as the engine runs it, through the producer stage (decode → detect →
track), detecting every 5th frame (the default) and every frame. On every clip:
- coverage: at least 95 % of the face-frames (a face mostly in the picture and uncovered) have a
  track box with IoU ≥ 0.5 with the true box;
- one appearance, one track: every face is followed by a single track, also across a brief
  occlusion (shorter than the tracker's patience, TRACK_PATIENCE_S) and while another face passes
  in front of it;
- no swaps: no track follows two faces;
- no false tracks: every track's box is on a true face in most of its frames.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from shared.media import probe_video
from shared.model.faces import build_face_detector
from shared.model.pipeline import EngineCache, analyze_video
from shared.model.stages.producer import CropProducer
from shared.model.tracking import iou_matrix
from shared.model.video import VideoReader
from shared.options import AnalysisOptions
from shared.settings import Settings
from tests.checkpoints import write_seed_checkpoint
from tests.tracks import CLIPS, FPS, TruthClip, make_track_clip

COVERAGE = 0.95
MATCH_IOU = 0.5
# Share of a track's frames on a true face. The rest are boxes carried between detection rounds
# after a face stopped or left (at most detect_every − 1 frames each time).
ON_A_FACE = 0.75


@pytest.fixture(scope="module")
def detector(published_detector_weights: Path):
    found, reasons = build_face_detector(kind="retinaface", device="cpu", weights_dir=published_detector_weights.parent)
    assert reasons == []
    return found


@pytest.fixture(scope="module")
def clip_of(tmp_path_factory):
    directory = tmp_path_factory.mktemp("track-clips")
    made: dict[str, TruthClip] = {}

    def make(name: str) -> TruthClip:
        if name not in made:
            made[name] = make_track_clip(directory, name)
        return made[name]

    return make


def _track_boxes(clip: TruthClip, detector, *, detect_every: int) -> dict[int, dict[int, np.ndarray]]:
    """{track id: {frame index: box}} for every frame the producer gave the track a crop."""
    producer = CropProducer(detector=detector, detect_every=detect_every, full_detect_every=6, input_size=16,
                            crop_margin=0.0, frame_s=1 / FPS)
    boxes: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    try:
        with VideoReader(clip.path, batch_size=9, info=probe_video(clip.path)) as reader:
            for prepared in producer.batches(reader):
                for owner in prepared.owners:
                    boxes[owner.track_id][owner.frame_index] = owner.box
    finally:
        producer.close()
    return dict(boxes)


@dataclass
class _Score:
    coverage: float
    tracks_per_face: list[set[int]]
    faces_per_track: dict[int, set[int]]
    on_a_face: dict[int, float]

    def summary(self) -> str:
        return (f"coverage {self.coverage:.3f}, tracks per face {[sorted(t) for t in self.tracks_per_face]}, "
                f"faces per track {self.faces_per_track}, on a face {self.on_a_face}")


def _score(clip: TruthClip, boxes: dict[int, dict[int, np.ndarray]]) -> _Score:
    present = clip.present
    covered = np.zeros_like(present)
    tracks_per_face: list[set[int]] = [set() for _ in range(present.shape[1])]
    faces_per_track: dict[int, set[int]] = {}
    on_a_face: dict[int, float] = {}
    for track_id, frames in boxes.items():
        faces_per_track[track_id], hits = set(), 0
        for frame, box in frames.items():
            ious = np.nan_to_num(iou_matrix(box, np.nan_to_num(clip.boxes[frame], nan=-1.0)))[0]
            face = int(ious.argmax())
            if ious[face] < MATCH_IOU:
                continue
            hits += 1
            faces_per_track[track_id].add(face)
            tracks_per_face[face].add(track_id)
            covered[frame, face] |= present[frame, face]
        on_a_face[track_id] = round(hits / len(frames), 3)
    return _Score(coverage=float(covered[present].mean()), tracks_per_face=tracks_per_face,
                  faces_per_track=faces_per_track, on_a_face=on_a_face)


@pytest.mark.parametrize("detect_every", [5, 1])
@pytest.mark.parametrize("name", list(CLIPS))
def test_every_face_is_covered_by_one_track_of_its_own(name: str, detect_every: int, clip_of, detector) -> None:
    clip = clip_of(name)
    score = _score(clip, _track_boxes(clip, detector, detect_every=detect_every))
    assert score.coverage >= COVERAGE, score.summary()
    assert all(len(tracks) == 1 for tracks in score.tracks_per_face), score.summary()  # no fragments
    assert all(len(faces) == 1 for faces in score.faces_per_track.values()), score.summary()  # no swaps
    assert all(share >= ON_A_FACE for share in score.on_a_face.values()), score.summary()  # no false tracks


def test_crossing_faces_keep_their_tracks_before_and_after(clip_of, detector) -> None:
    clip = clip_of("crossing")
    boxes = _track_boxes(clip, detector, detect_every=5)
    hidden = np.flatnonzero(clip.visible[:, 0] < 0.5)  # the first face passes behind the second
    before, after = int(hidden[0]) - 5, int(hidden[-1]) + 10
    owner_at = {}
    for frame in (before, after):
        for track_id, frames in boxes.items():
            if frame in frames:
                iou = iou_matrix(frames[frame], clip.boxes[frame])[0]
                owner_at[frame, int(iou.argmax())] = track_id
    assert owner_at[before, 0] == owner_at[after, 0]
    assert owner_at[before, 1] == owner_at[after, 1]
    assert owner_at[before, 0] != owner_at[before, 1]


def test_results_carry_each_tracks_boxes_on_the_true_face(tmp_path: Path, clip_of,
                                                          published_detector_weights: Path) -> None:
    clip = clip_of("late_and_early")
    weights = tmp_path / "weights"
    weights.mkdir()
    write_seed_checkpoint(weights, sequence_length=4)
    (weights / published_detector_weights.name).symlink_to(published_detector_weights)
    options = AnalysisOptions(face_detector="retinaface", precision="fp32", device="cpu", batch_size=8, heatmaps=0)
    data = analyze_video(clip.path, options=options, cache=EngineCache(Settings(weights_dir=weights))).to_dict()
    assert len(data["tracks"]) == 2
    late = max(data["tracks"], key=lambda t: t["first_frame"])
    entered, left = np.flatnonzero(clip.visible[:, 1] > 0)[[0, -1]]
    assert entered <= late["first_frame"] <= entered + 10 and left - 10 <= late["last_frame"] <= left + 5
    for track in data["tracks"]:
        samples = track["boxes"]
        assert samples and all(set(s) == {"frame", "t", "box"} for s in samples)
        assert [s["frame"] for s in samples] == sorted(s["frame"] for s in samples)
        assert track["first_frame"] <= samples[0]["frame"] and samples[-1]["frame"] <= track["last_frame"]
        on_face = [iou_matrix(np.array(s["box"]), np.nan_to_num(clip.boxes[s["frame"]], nan=-1.0)).max() >= MATCH_IOU
                   for s in samples]
        assert np.mean(on_face) >= 0.9
        assert samples[1]["t"] == pytest.approx(samples[1]["frame"] / FPS, abs=1e-3)
