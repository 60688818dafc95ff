"""build_face_detector: RetinaFace when weights are present, the Haar fallback with a warning otherwise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.errors import InvalidOptionsError, WeightsNotFoundError
from shared.model.faces import build_face_detector, default_backbone
from shared.model.faces.detector import FALLBACK_CODE
from tests.shared.model.faces.checkpoints import random_retinaface, save_pytorch_retinaface


def test_none_means_whole_frame(tmp_path):
    assert build_face_detector(kind="none", weights_dir=tmp_path) == (None, [])


def test_auto_without_weights_falls_back_to_haar_and_says_so(tmp_path):
    detector, reasons = build_face_detector(kind="auto", weights_dir=tmp_path)
    assert detector.name == "opencv-haar"
    assert [r.code for r in reasons] == [FALLBACK_CODE]
    assert "deepfake weights fetch" in reasons[0].message and "Haar" in reasons[0].message


def test_opencv_by_name_has_no_warning(tmp_path):
    detector, reasons = build_face_detector(kind="opencv", weights_dir=tmp_path)
    assert detector.name == "opencv-haar" and reasons == []


def test_retinaface_without_weights_names_the_files_and_the_fix(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        build_face_detector(kind="retinaface", weights_dir=tmp_path)
    message = info.value.message
    assert "mobilenet0.25_Final.pth" in message and "Resnet50_Final.pth" in message
    assert "deepfake weights fetch" in message


def test_unknown_kind_is_an_options_error(tmp_path):
    with pytest.raises(InvalidOptionsError):
        build_face_detector(kind="dlib", weights_dir=tmp_path)


def test_default_backbones():
    assert default_backbone("cpu") == "mobilenet0.25"
    assert default_backbone("cuda") == "resnet50"
    assert default_backbone("cuda:1") == "resnet50"


def test_auto_uses_installed_mobilenet_on_cpu(tmp_path):
    save_pytorch_retinaface(random_retinaface("mobilenet0.25"), tmp_path / "mobilenet0.25_Final.pth")
    detector, reasons = build_face_detector(kind="auto", device="cpu", weights_dir=tmp_path, max_side=320)
    assert detector.name == "retinaface-mobilenet0.25" and reasons == []
    assert detector.backend == "openvino"  # installed with the engine; ~3x torch on the CPU
    assert detector.normalisation.channels == "BGR" and detector.max_side == 320
    assert len(detector.detect(np.zeros((2, 90, 160, 3), dtype=np.uint8))) == 2


def test_cuda_default_falls_back_to_the_backbone_present(tmp_path):
    save_pytorch_retinaface(random_retinaface("mobilenet0.25"), tmp_path / "detection_mobilenet0.25_Final.pth")
    # Asking for CUDA's default (ResNet50) finds only MobileNet0.25; the detector is built on CPU here.
    from shared.model.faces.detector import find_retinaface_weights

    path, entry, backbone = find_retinaface_weights(tmp_path, device="cuda", backbone=None, registry=None)
    assert backbone == "mobilenet0.25" and entry.name == "retinaface-mobilenet0.25-pth"
    with pytest.raises(WeightsNotFoundError, match="Resnet50_Final.pth"):
        build_face_detector(kind="retinaface", backbone="resnet50", weights_dir=tmp_path)


def test_the_openvino_form_of_the_detector_is_cached_beside_its_weights(tmp_path):
    save_pytorch_retinaface(random_retinaface("mobilenet0.25", seed=4), tmp_path / "mobilenet0.25_Final.pth")
    first, _ = build_face_detector(kind="retinaface", device="cpu", weights_dir=tmp_path, max_side=160)
    [cached] = (tmp_path / ".openvino-cache").glob("*-retinaface-mobilenet0.25-*.xml")
    second, _ = build_face_detector(kind="retinaface", device="cpu", weights_dir=tmp_path, max_side=160)
    assert list((tmp_path / ".openvino-cache").glob("*.xml")) == [cached]
    frames = np.random.default_rng(0).integers(0, 255, size=(2, 90, 160, 3), dtype=np.uint8)
    assert first._forward.takes_uint8_frames  # normalisation is part of the compiled graph
    for a, b in zip(first._forward(frames), second._forward(frames)):
        assert torch.equal(a, b)
