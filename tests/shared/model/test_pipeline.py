"""The whole-video pipeline on real clips, against an independent computation of the windows."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest
import torch

from shared.errors import AnalysisCancelled, NotAVideoError
from shared.model.pipeline import EngineCache, analyze_video
from shared.options import AnalysisOptions
from shared.settings import Settings
from tests.checkpoints import write_constant_checkpoint, write_seed_checkpoint
from tests.media import make_face_clip, write_video

SEQ = 4


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    write_seed_checkpoint(directory, sequence_length=SEQ)
    return directory


@pytest.fixture(scope="module")
def cache(weights_dir):
    return EngineCache(Settings(weights_dir=weights_dir))


FAKE_P = 0.9  # what the constant checkpoint answers for any window (class 0 = FAKE, as in the seed's files)


@pytest.fixture(scope="module")
def constant_cache(tmp_path_factory):
    """An engine whose model answers FAKE_P for every window: the verdict follows from the rules alone."""
    directory = tmp_path_factory.mktemp("constant_weights")
    write_constant_checkpoint(directory, fake_probability=FAKE_P, sequence_length=SEQ)
    return EngineCache(Settings(weights_dir=directory))


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    return make_face_clip(tmp_path_factory.mktemp("clips") / "two.mp4", seconds=1.2, fps=10, width=480, height=240,
                          photos=("astronaut", "grace_hopper"))


def _options(**overrides):
    values = dict(precision="fp32", device="cpu", sequence_length=SEQ, batch_size=8, heatmaps=0)
    values.update(overrides)
    return AnalysisOptions(**values)


def test_whole_frame_windows_match_an_independent_computation(tmp_path, cache):
    clip = make_face_clip(tmp_path / "one.mp4", seconds=1.0, fps=10, width=160, height=120)
    result = analyze_video(clip, options=_options(face_detector="none", window_stride=3), cache=cache)
    assert result.frames_analyzed == 10
    [track] = result.tracks
    assert [(w.start_frame, w.end_frame) for w in track.windows] == [(0, 3), (3, 6), (6, 9)]

    # independent: decode with PyAV directly, resize with PIL, run the model per window
    import av
    from PIL import Image

    from shared.model.checkpoints import load_model

    model, spec = load_model(next(cache.settings.weights_dir.glob("*.pt")), device="cpu")
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)

    def tensor(frame):
        small = np.asarray(Image.fromarray(frame).resize((112, 112), Image.BILINEAR))[..., ::-1]  # BGR
        return (torch.from_numpy(small.copy()).permute(2, 0, 1).float() / 255 - mean) / std

    for window in track.windows:
        batch = torch.stack([tensor(frames[i]) for i in range(window.start_frame, window.end_frame + 1)])
        with torch.inference_mode():
            logits = model(batch[None])
        expected = torch.softmax(logits, 1)[0, spec.fake_index].item()
        assert window.fake_probability == pytest.approx(expected, abs=1e-5)
    assert track.fake_probability == pytest.approx(np.mean([w.fake_probability for w in track.windows]))


def test_two_people_give_two_tracks_with_json_contract(two_faces, constant_cache):
    result = analyze_video(two_faces, options=_options(face_detector="opencv", detect_every=2, heatmaps=2),
                           cache=constant_cache)
    data = result.to_dict()
    assert len(data["tracks"]) == 2
    # every window scores FAKE_P = 0.9 >= threshold 0.5 + band 0.05: both faces and the video are FAKE
    assert data["verdict"] == "FAKE" and [t["verdict"] for t in data["tracks"]] == ["FAKE", "FAKE"]
    assert isinstance(data["fake_probability"], float)
    assert data["fake_probability"] == pytest.approx(FAKE_P, abs=1e-3)
    assert data["fake_probability"] == pytest.approx(max(t["fake_probability"] for t in data["tracks"]))
    assert data["reasons"] == []
    assert data["video"]["frames"] == 12 and data["frames_analyzed"] == 12
    assert len(data["video"]["sha256"]) == 64
    assert data["params"]["face_detector"] == "opencv-haar"
    assert data["params"]["precision"] == "fp32"
    assert any(w["code"] == "fallback_face_detector" for w in data["warnings"]) is False  # asked for opencv
    for track in data["tracks"]:
        assert 0 <= track["first_frame"] <= track["last_frame"] <= 11
        for window in track["windows"]:
            assert window["end_frame"] >= window["start_frame"]
            assert window["end_s"] >= window["start_s"]
            assert 0.0 <= window["fake_probability"] <= 1.0
    assert len(result.artifacts) == 4  # heatmap + face for each of the 2 most suspicious windows
    assert all(a.data.startswith(b"\x89PNG") for a in result.artifacts)


@pytest.mark.parametrize(("threshold", "verdict", "reasons"), [
    (0.5, "FAKE", []),  # 0.9 >= 0.5 + 0.05
    (0.88, "INCONCLUSIVE", ["borderline"]),  # 0.83 < 0.9 < 0.93
    (0.96, "REAL", []),  # 0.9 <= 0.96 - 0.05
])
def test_the_verdict_follows_the_window_probabilities_and_the_threshold(tmp_path, constant_cache, threshold,
                                                                        verdict, reasons):
    clip = make_face_clip(tmp_path / "c.mp4", seconds=0.8, fps=10, width=160, height=120)
    result = analyze_video(clip, options=_options(face_detector="none", threshold=threshold), cache=constant_cache)
    [track] = result.tracks
    assert [w.fake_probability for w in track.windows] == pytest.approx([FAKE_P] * len(track.windows), abs=1e-3)
    assert (result.verdict, track.verdict) == (verdict, verdict)
    assert result.fake_probability == pytest.approx(FAKE_P, abs=1e-3)
    assert [r.code for r in result.reasons] == reasons


def test_auto_without_retinaface_weights_says_it_fell_back(two_faces, cache):
    result = analyze_video(two_faces, options=_options(face_detector="auto", heatmaps=0), cache=cache)
    assert any(w.code == "fallback_face_detector" for w in result.warnings)


def test_no_faces_is_inconclusive_without_a_probability(tmp_path, cache):
    blank = write_video(tmp_path / "blank.mp4", np.full((8, 120, 160, 3), 90, dtype=np.uint8), fps=10)
    result = analyze_video(blank, options=_options(face_detector="opencv"), cache=cache)
    assert result.verdict == "INCONCLUSIVE"
    assert result.fake_probability is None
    assert [r.code for r in result.reasons] == ["no_faces"]
    assert result.tracks == []


def test_a_clip_shorter_than_one_window_is_one_window(tmp_path, cache):
    clip = make_face_clip(tmp_path / "short.mp4", seconds=0.3, fps=10, width=160, height=120)
    result = analyze_video(clip, options=_options(face_detector="none", sequence_length=None, window_stride=None),
                           cache=cache)
    [track] = result.tracks
    assert [(w.start_frame, w.end_frame) for w in track.windows] == [(0, 2)]
    assert any(r.code == "short_track" for r in result.reasons)


def test_progress_reports_every_window_once_and_cancellation_stops(tmp_path, cache):
    clip = make_face_clip(tmp_path / "p.mp4", seconds=2.0, fps=10, width=160, height=120)
    events = []
    result = analyze_video(clip, options=_options(face_detector="none", batch_size=4), cache=cache,
                           on_progress=events.append)
    reported = [w for e in events for w in e.windows]
    assert sorted(reported, key=lambda w: w.start_frame) == result.tracks[0].windows
    assert events[-1].frames_done == events[-1].frames_total == 20

    calls = []
    with pytest.raises(AnalysisCancelled):
        analyze_video(clip, options=_options(face_detector="none", batch_size=4), cache=cache,
                      should_cancel=lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2


def test_frame_stride_analyses_every_nth_frame(tmp_path, cache):
    clip = make_face_clip(tmp_path / "s.mp4", seconds=2.0, fps=10, width=160, height=120)
    result = analyze_video(clip, options=_options(face_detector="none", frame_stride=2, window_stride=4),
                           cache=cache)
    assert result.frames_analyzed == 10
    assert result.tracks[0].windows[0].end_frame == 6  # frames 0, 2, 4, 6


def test_a_known_digest_is_used_and_load_time_is_this_analysis_own(tmp_path, cache):
    from shared.files import sha256_file

    clip = make_face_clip(tmp_path / "h.mp4", seconds=0.5, fps=10, width=160, height=120)
    computed = analyze_video(clip, options=_options(face_detector="none"), cache=cache)
    assert computed.video["sha256"] == sha256_file(clip)
    # The service hashed the upload as it arrived: the file is not read again for it.
    given = analyze_video(clip, options=_options(face_detector="none"), cache=cache, sha256="ab" * 32)
    assert given.video["sha256"] == "ab" * 32
    engine = cache.get(_options(face_detector="none"))
    # Loaded by an earlier analysis: this one did not spend the engine's load time again.
    assert given.timings["load_s"] < engine.load_s


def test_not_a_video_is_a_typed_error(tmp_path, cache):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video")
    with pytest.raises(NotAVideoError):
        analyze_video(path, options=_options(), cache=cache)


def test_the_model_is_loaded_once_per_setting(cache):
    first = cache.get(_options(face_detector="none"))
    assert cache.get(_options(face_detector="none")) is first
    assert cache.get(_options(face_detector="opencv")) is not first


def test_tracks_without_one_confident_detection_are_ignored(two_faces, cache):
    from shared.model.types import Detection

    options = _options(face_detector="opencv", detect_every=2, heatmaps=2)
    engine = cache.get(options)
    real = engine.detector

    class RightFaceUnsure:
        """The real detector, but the right-hand face is only ever found with a low score."""

        name = real.name

        def detect(self, frames):
            width = frames.shape[2]
            return [[d if d.box[0] < width / 2 else Detection(box=d.box, score=0.3) for d in found]
                    for found in real.detect(frames)]

    engine.detector = RightFaceUnsure()
    try:
        result = analyze_video(two_faces, options=options, cache=cache)
    finally:
        engine.detector = real
    assert len(result.tracks) == 1
    assert result.tracks[0].windows
    assert any(w.code == "ignored_unconfident_tracks" for w in result.warnings)
    assert result.fake_probability == result.tracks[0].fake_probability
    # the heatmaps come from the kept track only, and the dropped one took no slot
    assert len(result.artifacts) == 4
    assert {a.track_id for a in result.artifacts} == {result.tracks[0].id}


class _Recording:
    """The engine's real detector, recording which kind of search each detection round ran."""

    def __init__(self, real) -> None:
        self.real, self.name, self.calls = real, real.name, []

    def detect(self, frames):
        self.calls.append("full")
        return self.real.detect(frames)

    def detect_near(self, frame, boxes):
        self.calls.append("near")
        return self.real.detect_near(frame, boxes)


@contextmanager
def _recording_detector(engine) -> Iterator[_Recording]:
    real = engine.detector
    engine.detector = _Recording(real)
    try:
        yield engine.detector
    finally:
        engine.detector = real


def test_between_full_searches_the_detector_looks_only_near_tracked_faces(two_faces, cache):
    options = _options(face_detector="opencv", detect_every=1, full_detect_every=3)
    always_full_options = _options(face_detector="opencv", detect_every=1, full_detect_every=1)
    with _recording_detector(cache.get(options)) as recording:
        mixed = analyze_video(two_faces, options=options, cache=cache)
        searches = list(recording.calls)
        recording.calls.clear()
        always_full = analyze_video(two_faces, options=always_full_options, cache=cache)
    assert searches == ["full", "near", "near"] * 4  # 12 frames, one detection round each
    assert set(recording.calls) == {"full"}
    assert [(t.first_frame, t.last_frame, t.frames) for t in mixed.tracks] == \
        [(t.first_frame, t.last_frame, t.frames) for t in always_full.tracks]
    assert len(mixed.tracks) == 2
    assert mixed.params["full_detect_every"] == 3


def test_with_no_face_tracked_every_detection_round_searches_whole_frames(tmp_path, cache):
    clip = write_video(tmp_path / "blank.mp4", np.full((6, 120, 160, 3), 90, dtype=np.uint8), fps=10)
    options = _options(face_detector="opencv", detect_every=1, full_detect_every=4)
    with _recording_detector(cache.get(options)) as recording:
        analyze_video(clip, options=options, cache=cache)
    assert recording.calls == ["full"] * 6
