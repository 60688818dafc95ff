"""The GPU path of the pipeline (frames decoded where the engine runs, crops cut there), run on the
CPU through torchcodec's CPU decoder: it must answer as the PyAV path does, and say which decoded."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from shared.model.pipeline import EngineCache, analyze_video
from shared.options import AnalysisOptions
from shared.settings import Settings
from tests.checkpoints import write_seed_checkpoint
from tests.media import make_face_clip

pytest.importorskip("torchcodec", reason="the device path decodes with torchcodec (requirements/gpu.txt)")

SEQ = 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory, published_detector_weights):
    directory = tmp_path_factory.mktemp("weights")
    write_seed_checkpoint(directory, sequence_length=SEQ)
    shutil.copy(published_detector_weights, directory / published_detector_weights.name)
    return EngineCache(Settings(weights_dir=directory))


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    return make_face_clip(tmp_path_factory.mktemp("clips") / "two.mp4", seconds=2.0, fps=10, width=640, height=320,
                          photos=("astronaut", "grace_hopper"))


def _options(**overrides) -> AnalysisOptions:
    values = dict(precision="fp32", device="cpu", sequence_length=SEQ, batch_size=8, heatmaps=1, detect_every=2)
    values.update(overrides)
    return AnalysisOptions(**values)


def _windows(result) -> dict[tuple[int, int], float]:
    return {(t.id, w.start_frame): w.fake_probability for t in result.tracks for w in t.windows}


def test_device_decoding_finds_the_same_faces_and_scores_within_tolerance(two_faces, cache, tmp_path):
    on_host = analyze_video(two_faces, options=_options(), cache=cache, decoder="cpu")
    on_device = analyze_video(two_faces, options=_options(), cache=cache, decoder="device",
                              preview_dir=tmp_path)
    assert on_host.params["decoder"] == "pyav"
    assert on_device.params["decoder"] == "torchcodec-cpu"
    assert on_device.params["face_detector"].startswith("retinaface")
    assert on_device.frames_analyzed == on_host.frames_analyzed == 20
    # The frames are the same pixels (same libswscale), so detection and tracking are identical...
    assert [(t.id, t.first_frame, t.last_frame, t.frames) for t in on_device.tracks] == \
        [(t.id, t.first_frame, t.last_frame, t.frames) for t in on_host.tracks]
    assert len(on_device.tracks) == 2
    # ...and only the crops' resampling differs (area average against PIL's antialiased bilinear).
    host, device = _windows(on_host), _windows(on_device)
    assert host.keys() == device.keys() and host
    assert max(abs(host[k] - device[k]) for k in host) <= 0.01
    names = {a.name for a in on_device.artifacts}
    assert "preview.mp4" in names and any(n.endswith("-heatmap.png") for n in names), names
    # The model here has random weights (p ≈ 0.5 whatever it sees), so the crops are compared too: the
    # most suspicious window's face crop, cut on the "device", is the host path's within resampling.
    assert _face_crop(on_device).shape == _face_crop(on_host).shape
    assert np.abs(_face_crop(on_device).astype(int) - _face_crop(on_host).astype(int)).mean() < 2.5


def _face_crop(result) -> np.ndarray:
    [face] = [a for a in result.artifacts if a.name.endswith("-face.png")]
    return np.asarray(Image.open(io.BytesIO(face.data)).convert("RGB"))


def test_without_a_face_detector_the_device_path_scores_whole_frames(two_faces, cache):
    options = _options(face_detector="none")
    on_host = analyze_video(two_faces, options=options, cache=cache, decoder="cpu")
    on_device = analyze_video(two_faces, options=options, cache=cache, decoder="device")
    host, device = _windows(on_host), _windows(on_device)
    assert host.keys() == device.keys() and host
    assert max(abs(host[k] - device[k]) for k in host) <= 0.01


def test_a_cpu_engine_decodes_with_pyav_by_default(two_faces, cache):
    result = analyze_video(two_faces, options=_options(), cache=cache)
    assert result.params["decoder"] == "pyav"
    assert not [w for w in result.warnings if w.code == "cpu_decoding"]


def test_an_unknown_decoder_is_refused(two_faces, cache):
    with pytest.raises(ValueError, match="decoder must be"):
        analyze_video(two_faces, options=_options(), cache=cache, decoder="gpu")


def test_window_probabilities_are_real_numbers(two_faces, cache):
    result = analyze_video(two_faces, options=_options(), cache=cache, decoder="device")
    assert all(np.isfinite(p) and 0.0 <= p <= 1.0 for p in _windows(result).values())
