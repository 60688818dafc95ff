"""The preview video: a small seekable H.264 MP4 in the source's time, stored as a job artifact."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from shared.db.artifacts import write_artifacts
from shared.errors import AnalysisCancelled
from shared.model.pipeline import EngineCache, analyze_video
from shared.model.preview import (PREVIEW_MEDIA_TYPE, PREVIEW_NAME, frame_stride_for, preview_artifact, scaled_size,
                                  write_preview)
from shared.options import AnalysisOptions
from shared.settings import Settings
from tests.checkpoints import write_seed_checkpoint
from tests.media import make_face_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s at 30 fps, 320×240: 90 frames, a face in the middle."""
    return make_face_clip(tmp_path_factory.mktemp("clips") / "face30.mp4", seconds=3.0, fps=30, width=320, height=240)


def _decode(path: Path) -> tuple[av.video.stream.VideoStream, list[float], list[np.ndarray], int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        audio = len(container.streams.audio)
        frames = list(container.decode(video=0))
        return stream, [float(f.time) for f in frames], [f.to_ndarray(format="rgb24") for f in frames], audio


def test_the_preview_is_small_h264_at_most_15_fps_in_the_sources_time(clip, tmp_path):
    encoded = write_preview(clip, tmp_path / "p.mp4", short_side=120)

    stream, times, frames, audio = _decode(encoded.path)
    assert stream.codec_context.name == "h264" and audio == 0
    assert (stream.width, stream.height) == (160, 120) == (encoded.width, encoded.height)
    assert len(frames) == encoded.frames == 45  # every second frame of 90
    assert times[0] == pytest.approx(0.0, abs=1e-3)
    assert np.diff(times) == pytest.approx(np.full(44, 2 / 30), abs=1e-3)  # the source's own times
    # the picture is the source's, scaled: the face's mean colour, not a blank frame
    with av.open(str(clip)) as source:
        first = next(source.decode(video=0)).to_ndarray(format="rgb24", width=160, height=120)
    assert np.abs(frames[0].astype(int) - first.astype(int)).mean() < 12


def test_the_index_comes_first_so_the_browser_plays_while_it_downloads(clip, tmp_path):
    data = write_preview(clip, tmp_path / "p.mp4").path.read_bytes()

    assert 0 < data.index(b"moov") < data.index(b"mdat")


def test_sizes_and_rates():
    assert scaled_size(1280, 720, short_side=480) == (852, 480)  # even, for yuv420p
    assert scaled_size(720, 1280, short_side=480) == (480, 852)  # portrait: the short side is the width
    assert scaled_size(320, 240, short_side=480) == (320, 240)  # never upscaled
    assert [frame_stride_for(fps, max_fps=15) for fps in (10, 15, 25, 30, 60, 0)] == [1, 1, 2, 2, 4, 1]


def test_the_recorder_keeps_every_kth_frame_it_is_given_scaled(clip, tmp_path):
    from shared.model.preview import PreviewRecorder
    from shared.media import probe_video
    from shared.model.video import VideoReader

    info = probe_video(clip)
    recorder = PreviewRecorder(tmp_path / "r.mp4", info=info, short_side=120)
    passed = sum(len(batch) for batch in recorder.tap(VideoReader(clip, batch_size=7, info=info)))
    encoded = recorder.finish()

    stream, times, _, _ = _decode(encoded.path)
    assert passed == 90 and (stream.frames, stream.width, stream.height) == (45, 160, 120)
    assert times[:3] == pytest.approx([0.0, 2 / 30, 4 / 30], abs=1e-3) and recorder.busy_s > 0


def test_a_discarded_recording_leaves_no_file(clip, tmp_path):
    from shared.model.preview import PreviewRecorder
    from shared.media import probe_video
    from shared.model.video import VideoReader

    info = probe_video(clip)
    recorder = PreviewRecorder(tmp_path / "r.mp4", info=info)
    recorder.add(next(iter(VideoReader(clip, batch_size=4, info=info))))
    recorder.discard()

    assert list(tmp_path.iterdir()) == []


def test_cancelling_stops_the_preview_and_leaves_no_file(clip, tmp_path):
    with pytest.raises(AnalysisCancelled):
        preview_artifact(clip, directory=tmp_path, should_cancel=lambda: True)

    assert list(tmp_path.iterdir()) == []


def test_the_preview_artifact_is_moved_into_the_attempt_folder(clip, tmp_path):
    artifact = preview_artifact(clip, directory=tmp_path / "artifacts")
    size = artifact.path.stat().st_size

    [stored] = write_artifacts(artifacts_dir=tmp_path / "artifacts", job_id="job-1", attempt=1, artifacts=[artifact])

    assert (stored.name, stored.media_type, stored.size, stored.track_id) == (PREVIEW_NAME, PREVIEW_MEDIA_TYPE, size, None)
    assert not artifact.path.exists()  # moved, not copied
    assert (tmp_path / "artifacts" / stored.path).stat().st_size == size
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == ["job-1"]  # no temporary file left


def test_analyze_video_adds_the_preview_only_where_it_is_asked_for(clip, tmp_path):
    weights = tmp_path / "weights"
    write_seed_checkpoint(weights, sequence_length=4)
    cache = EngineCache(Settings(weights_dir=weights))
    options = AnalysisOptions(precision="fp32", device="cpu", sequence_length=4, batch_size=8, heatmaps=0,
                              face_detector="none", frame_stride=3)

    plain = analyze_video(clip, options=options, cache=cache)
    with_preview = analyze_video(clip, options=options, cache=cache, preview_dir=tmp_path / "out")
    switched_off = analyze_video(clip, options=AnalysisOptions(**{**options.to_dict(), "preview": False}),
                                 cache=cache, preview_dir=tmp_path / "off")

    assert plain.artifacts == [] and "preview_s" not in plain.timings
    [preview] = with_preview.artifacts
    assert preview.name == PREVIEW_NAME and preview.path.parent == tmp_path / "out" and preview.data is None
    assert with_preview.timings["preview_s"] > 0
    assert with_preview.to_dict()["artifacts"] == [{"name": PREVIEW_NAME, "media_type": PREVIEW_MEDIA_TYPE,
                                                    "track_id": None, "description": preview.description}]
    # made from the analysed frames: every third of 30 fps is 10 fps, under the cap, so all 30 of them
    stream, times, _, _ = _decode(preview.path)
    assert (stream.frames, stream.width, stream.height) == (30, 320, 240)
    assert np.diff(times) == pytest.approx(np.full(29, 0.1), abs=1e-3)
    assert switched_off.artifacts == [] and not (tmp_path / "off").exists()
    with pytest.raises(AnalysisCancelled):  # a cancelled analysis leaves no half-made preview behind
        analyze_video(clip, options=options, cache=cache, preview_dir=tmp_path / "cancelled", should_cancel=lambda: True)
    assert list((tmp_path / "cancelled").iterdir()) == []


def test_a_preview_file_that_cannot_be_written_costs_the_preview_not_the_analysis(clip, tmp_path):
    """A file the encoder cannot write (here: its folder is a file) is a failed preview: the recorder takes
    the frames, `finish` raises PreviewFailed (which the analysis turns into a warning), nothing is left."""
    from shared.media import probe_video
    from shared.model.preview import PreviewFailed, PreviewRecorder
    from shared.model.video import VideoReader

    info = probe_video(clip)
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    recorder = PreviewRecorder(blocker / "r.mp4", info=info)
    recorder.add(next(iter(VideoReader(clip, batch_size=4, info=info))))
    with pytest.raises(PreviewFailed):
        recorder.finish()
    assert list(tmp_path.iterdir()) == [blocker]
