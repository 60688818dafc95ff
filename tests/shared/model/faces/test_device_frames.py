"""RetinaFace on frames that are already tensors where they were decoded (the GPU path's (N, 3, H, W)
uint8), checked on the CPU: the torch network finds the faces the host path finds, and a network that
takes host frames (OpenVINO) gets exactly the host path's answer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shared.model.faces.checkpoint import load_detector_weights
from shared.model.faces.inference import RetinaFaceDetector
from shared.model.faces.openvino_net import OpenVINORetinaFace
from shared.model.tracking import iou_matrix
from shared.model.weights_registry import NORMALISATION
from tests.media import animated_frames


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Six 1280×720 frames of both bundled face photos, moving."""
    return animated_frames(photos=("astronaut", "grace_hopper"), width=1280, height=720, count=6)


def _as_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def _same_faces(host, device, *, min_iou: float, score_tolerance: float) -> None:
    for on_host, on_device in zip(host, device, strict=True):
        assert len(on_host) == len(on_device) >= 1
        ious = iou_matrix(np.array([d.box for d in on_host]), np.array([d.box for d in on_device]))
        assert ious.max(axis=1).min() >= min_iou
        best = ious.argmax(axis=1)
        for i, j in enumerate(best):
            assert abs(on_host[i].score - on_device[j].score) <= score_tolerance


def test_the_torch_network_finds_the_same_faces_in_tensor_frames(published_detector_weights: Path, frames) -> None:
    loaded = load_detector_weights(published_detector_weights)
    detector = RetinaFaceDetector(loaded.net, normalisation=loaded.normalisation, backend="torch", max_side=640)
    host = detector.detect(frames)
    device = detector.detect(_as_tensor(frames))
    # The host path shrinks with OpenCV's area filter, the device path with torch's antialiased bilinear.
    _same_faces(host, device, min_iou=0.9, score_tolerance=0.02)


def test_a_network_taking_host_frames_gets_the_host_answer(published_detector_weights: Path, frames) -> None:
    norm = NORMALISATION["pytorch-retinaface"]
    detector = RetinaFaceDetector(OpenVINORetinaFace(onnx_path=published_detector_weights, precision="fp32",
                                                     normalisation=norm), normalisation=norm, max_side=640)
    host = detector.detect(frames)
    device = detector.detect(_as_tensor(frames))
    _same_faces(host, device, min_iou=0.9999, score_tolerance=1e-6)


def test_tensor_frames_must_be_nchw(published_detector_weights: Path, frames) -> None:
    loaded = load_detector_weights(published_detector_weights)
    detector = RetinaFaceDetector(loaded.net, normalisation=loaded.normalisation, backend="torch")
    with pytest.raises(ValueError, match="N, 3, H, W"):
        detector.detect(torch.from_numpy(frames))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_fp16_detection_of_gpu_frames_finds_the_fp32_faces(published_detector_weights: Path, frames) -> None:
    loaded = load_detector_weights(published_detector_weights)
    fp32 = RetinaFaceDetector(loaded.net, normalisation=loaded.normalisation, device="cuda", half=False)
    fp16 = RetinaFaceDetector(loaded.net, normalisation=loaded.normalisation, device="cuda")
    assert (fp32.precision, fp16.precision) == ("fp32", "fp16")
    on_gpu = _as_tensor(frames).cuda()
    _same_faces(fp32.detect(on_gpu), fp16.detect(on_gpu), min_iou=0.95, score_tolerance=0.01)
    _same_faces(fp32.detect(frames), fp32.detect(on_gpu), min_iou=0.9, score_tolerance=0.02)
