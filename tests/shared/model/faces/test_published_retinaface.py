"""The trained RetinaFace (the published MobileNet0.25 ONNX) as the engine runs it, on real faces.

Faces must be found in every container and codec the engine accepts, in rotated phone video, in
4K and at odd sizes; bf16 (chosen where the CPU computes it natively) must find the same faces as
fp32. The weights are installed by the test command (scripts/test.sh → bootstrap).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from shared.media import probe_video
from shared.model.faces import build_face_detector
from shared.model.faces.inference import RetinaFaceDetector
from shared.model.faces.openvino_net import OpenVINORetinaFace
from shared.model.tracking import iou_matrix
from shared.model.video import VideoReader
from shared.model.weights_registry import NORMALISATION
from tests.media import animated_frames, face_photo, write_video
from tests.shared.model.test_video_formats import MATRIX, _encoders

TRUSTED = 0.9  # a real, frontal, unoccluded face scores above 0.99 here; 0.9 leaves room for codecs


def _detector(weights: Path, precision: str = "fp32") -> RetinaFaceDetector:
    norm = NORMALISATION["pytorch-retinaface"]
    net = OpenVINORetinaFace(onnx_path=weights, precision=precision, normalisation=norm)
    return RetinaFaceDetector(net, normalisation=norm, max_side=640)


@pytest.fixture(scope="module")
def detector(published_detector_weights: Path) -> RetinaFaceDetector:
    return _detector(published_detector_weights)


def _decode(path: Path) -> np.ndarray:
    with VideoReader(path, batch_size=8) as reader:
        return np.concatenate([batch.frames for batch in reader])


def _faces(detector: RetinaFaceDetector, frames: np.ndarray) -> list[np.ndarray]:
    """Per frame, the boxes of the faces scored above TRUSTED."""
    return [np.array([d.box for d in found if d.score >= TRUSTED]).reshape(-1, 4)
            for found in detector.detect(frames)]


def test_auto_uses_the_published_detector_and_warns_of_nothing(published_detector_weights: Path) -> None:
    detector, reasons = build_face_detector(kind="auto", device="cpu", weights_dir=published_detector_weights.parent)
    assert detector.name == "retinaface-mobilenet0.25" and reasons == []
    for photo in ("astronaut", "grace_hopper"):
        [found] = detector.detect(face_photo(photo)[None])
        assert len(found) == 1 and found[0].score > 0.99, photo


def test_a_face_free_frame_has_no_face(detector: RetinaFaceDetector) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, size=(2, 360, 640, 3), dtype=np.uint8)
    flat = np.full((1, 360, 640, 3), 128, dtype=np.uint8)
    assert all(len(boxes) == 0 for boxes in _faces(detector, np.concatenate([noise, flat])))


def test_bf16_finds_the_same_faces_as_fp32(published_detector_weights: Path) -> None:
    """Recall and box IoU against fp32 on real-face frames: the check behind choosing bf16 on the CPU."""
    groups = [
        animated_frames(photos=("astronaut", "grace_hopper"), width=1280, height=720, count=6),
        animated_frames(photos=("grace_hopper",), width=640, height=360, count=4),
        animated_frames(photos=("astronaut", "grace_hopper", "astronaut"), width=960, height=300, count=4),
    ]
    reference_detector = _detector(published_detector_weights, "fp32")
    fast_detector = _detector(published_detector_weights, "bf16")
    fp32 = [found for frames in groups for found in reference_detector.detect(frames)]
    bf16 = [found for frames in groups for found in fast_detector.detect(frames)]
    total = 0
    for reference, fast in zip(fp32, bf16):
        ref_boxes = np.array([d.box for d in reference if d.score >= TRUSTED]).reshape(-1, 4)
        fast_boxes = np.array([d.box for d in fast if d.score >= TRUSTED]).reshape(-1, 4)
        assert len(fast_boxes) == len(ref_boxes)
        if len(ref_boxes):
            assert iou_matrix(ref_boxes, fast_boxes).max(axis=1).min() >= 0.9
        total += len(ref_boxes)
    assert total == 6 * 2 + 4 + 4 * 3


@pytest.mark.parametrize(("ext", "encoder", "pix_fmt", "container", "codec", "extra"), MATRIX,
                         ids=[f"{row[0]}-{row[4]}" for row in MATRIX])
def test_the_face_is_found_in_every_frame_of_every_accepted_format(
    tmp_path: Path, detector: RetinaFaceDetector, ext: str, encoder: str, pix_fmt: str,
    container: str, codec: str, extra: tuple[str, ...],
) -> None:
    if encoder not in _encoders():
        pytest.skip(f"this ffmpeg has no {encoder} encoder, so no {ext}/{codec} clip can be made")
    source = animated_frames(photos=("grace_hopper",), width=352, height=288, count=8)  # a size H.263 allows
    clip = write_video(tmp_path / f"clip.{ext}", source, fps=10.0, codec=encoder, pix_fmt=pix_fmt, extra_args=extra)
    expected = _faces(detector, source)
    found = _faces(detector, _decode(clip))
    assert len(found) == len(source)
    for truth, boxes in zip(expected, found):
        assert len(truth) == 1 and len(boxes) == 1
        assert iou_matrix(truth, boxes)[0, 0] >= 0.8


def test_a_rotated_phone_video_is_analysed_upright(tmp_path: Path, detector: RetinaFaceDetector) -> None:
    portrait = animated_frames(photos=("astronaut",), width=360, height=640, count=6)
    # Phones store the sensor's landscape picture and a display matrix that turns it upright.
    # FFmpeg's `rotate=90` tag means "turn 90° counter-clockwise to show" (a 270° clockwise turn).
    stored = np.ascontiguousarray(np.rot90(portrait, k=-1, axes=(1, 2)))
    plain = write_video(tmp_path / "stored.mp4", stored)
    rotated = tmp_path / "phone.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    str(rotated)], check=True)
    info = probe_video(rotated)
    assert (info.rotation, info.width, info.height) == (270, 360, 640)
    frames = _decode(rotated)
    assert frames.shape[1:3] == (640, 360)
    expected = _faces(detector, portrait)
    for truth, boxes in zip(expected, _faces(detector, frames)):
        assert len(truth) == 1 and len(boxes) == 1 and iou_matrix(truth, boxes)[0, 0] >= 0.8


@pytest.mark.parametrize(("width", "height", "pix_fmt"), [
    (3840, 2160, "yuv420p"),  # 4K: detected on a 640-wide copy, boxes mapped back
    (853, 481, "yuv444p"),  # odd sizes (4:2:0 needs even ones)
    (201, 355, "yuv444p"),
])
def test_faces_are_found_at_4k_and_odd_sizes(tmp_path: Path, detector: RetinaFaceDetector,
                                             width: int, height: int, pix_fmt: str) -> None:
    photos = ("astronaut", "grace_hopper") if width > height else ("grace_hopper",)
    source = animated_frames(photos=photos, width=width, height=height, count=3)
    clip = write_video(tmp_path / "clip.mp4", source, pix_fmt=pix_fmt, extra_args=("-preset", "ultrafast"))
    frames = _decode(clip)
    assert frames.shape == source.shape
    for boxes in _faces(detector, frames):
        assert len(boxes) == len(photos)
        # Boxes are in the frame's own pixels: each face is inside its photo's tile.
        tile = width / len(photos)
        assert sorted(int(((b[0] + b[2]) / 2) // tile) for b in boxes) == list(range(len(photos)))


def test_an_onnx_file_that_names_external_data_is_refused_before_openvino_reads_it(
    tmp_path: Path, published_detector_weights: Path,
) -> None:
    from shared.errors import CheckpointFormatError

    hostile = tmp_path / published_detector_weights.name
    hostile.write_bytes(published_detector_weights.read_bytes() + b"\x12\x08location\x1a\x0b/etc/passwd")
    with pytest.raises(CheckpointFormatError, match="external data"):
        build_face_detector(kind="retinaface", device="cpu", weights_dir=tmp_path)
