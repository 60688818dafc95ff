"""RetinaFace: both backbones, both checkpoint families' key layouts, mismatches, batched detection."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.errors import CheckpointMismatchError
from shared.model.faces.checkpoint import load_detector_weights, read_state_dict
from shared.model.faces.inference import RetinaFaceDetector, detection_size
from shared.model.faces.priors import prior_boxes
from shared.model.faces.retinaface import RetinaFace, load_state
from shared.model.weights_registry import NORMALISATION
from tests.shared.model.faces.checkpoints import (
    random_retinaface,
    save_pytorch_retinaface,
    save_retinaface_pytorch_zip,
)

INPUT = torch.linspace(-1, 1, 2 * 3 * 64 * 96).reshape(2, 3, 64, 96)


@pytest.fixture(scope="module")
def resnet50() -> RetinaFace:
    return random_retinaface("resnet50", seed=1)


@pytest.fixture()
def random_net(request, resnet50):
    backbone = request.param
    return resnet50 if backbone == "resnet50" else random_retinaface(backbone, seed=2)


def _outputs(net: RetinaFace) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return net.eval()(INPUT)


@pytest.mark.parametrize("random_net", ["mobilenet0.25", "resnet50"], indirect=True)
def test_pytorch_retinaface_layout_loads_with_identical_outputs(tmp_path, random_net):
    net, backbone = random_net, random_net.backbone
    name = "mobilenet0.25_Final.pth" if backbone == "mobilenet0.25" else "Resnet50_Final.pth"
    path = save_pytorch_retinaface(net, tmp_path / name)
    state, container = read_state_dict(path)
    assert container == "torch" and all(k.startswith("module.") for k in state)

    loaded = load_detector_weights(path)

    assert loaded.backbone == backbone
    assert loaded.family == "pytorch-retinaface" and loaded.normalisation.channels == "BGR"
    for expected, actual in zip(_outputs(net), _outputs(loaded.net)):
        assert torch.equal(expected, actual)


@pytest.mark.parametrize("random_net,legacy", [("resnet50", True), ("mobilenet0.25", False)], indirect=["random_net"])
def test_retinaface_pytorch_zip_layout_loads_with_identical_outputs(tmp_path, random_net, legacy):
    net, backbone = random_net, random_net.backbone
    path = save_retinaface_pytorch_zip(net, tmp_path / f"my-{backbone}.zip", legacy=legacy)
    state, container = read_state_dict(path)
    assert container == "zip" and not any(k.startswith("module.") for k in state)

    loaded = load_detector_weights(path)

    assert loaded.backbone == backbone
    assert loaded.family == "retinaface-pytorch" and loaded.family_source == "container"
    assert loaded.normalisation == NORMALISATION["retinaface-pytorch"]
    for expected, actual in zip(_outputs(net), _outputs(loaded.net)):
        assert torch.equal(expected, actual)


def test_registry_file_name_decides_the_family(tmp_path, resnet50):
    path = save_retinaface_pytorch_zip(resnet50, tmp_path / "retinaface_resnet50_2020-07-20.zip")
    loaded = load_detector_weights(path)
    assert (loaded.family, loaded.family_source) == ("retinaface-pytorch", "registry")


def test_checkpoint_of_the_other_backbone_is_refused_naming_the_keys():
    state = RetinaFace("mobilenet0.25").state_dict()
    with pytest.raises(CheckpointMismatchError) as info:
        load_state(RetinaFace("resnet50"), state, source="mobilenet.pth")
    message = info.value.message
    assert "missing keys [body.bn1.bias" in message
    assert "unexpected keys [body.stage1.0.0.weight" in message


def test_missing_and_unexpected_keys_are_named():
    state = {f"module.{k}": v for k, v in RetinaFace("mobilenet0.25").state_dict().items()}
    del state["module.ssh2.conv3X3.0.weight"]
    state["module.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as info:
        load_state(RetinaFace("mobilenet0.25"), state)
    assert "missing keys [ssh2.conv3X3.0.weight]" in info.value.message
    assert "unexpected keys [extra.weight]" in info.value.message


def test_wrong_shapes_are_named():
    state = RetinaFace("mobilenet0.25").state_dict()
    state["ClassHead.0.conv1x1.weight"] = torch.zeros(6, 64, 1, 1)
    with pytest.raises(CheckpointMismatchError, match="ClassHead.0.conv1x1.weight"):
        load_state(RetinaFace("mobilenet0.25"), state)


def test_output_covers_every_prior():
    loc, logits, landmarks = _outputs(RetinaFace("mobilenet0.25"))
    priors = prior_boxes(64, 96).shape[0]
    assert loc.shape == (2, priors, 4) and logits.shape == (2, priors, 2) and landmarks.shape == (2, priors, 10)


def _frames(count: int, height: int = 180, width: int = 320) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(count, height // 4, width // 4, 3), dtype=np.uint8)
    return np.ascontiguousarray(base.repeat(4, axis=1).repeat(4, axis=2))


def test_batch_gives_the_same_boxes_as_one_frame_at_a_time():
    detector = RetinaFaceDetector(random_retinaface("mobilenet0.25", seed=4),
                                  normalisation=NORMALISATION["pytorch-retinaface"], max_side=160,
                                  score_threshold=0.5)
    frames = _frames(4)
    batched = detector.detect(frames)
    single = [detector.detect(frames[i : i + 1])[0] for i in range(len(frames))]
    assert sum(len(d) for d in batched) > 0, "random weights should fire somewhere at threshold 0.5"
    for together, alone in zip(batched, single):
        assert len(together) == len(alone)
        for a, b in zip(together, alone):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            assert abs(a.score - b.score) < 1e-5


class _OnePriorNet(RetinaFace):
    """Fires on exactly one prior with zero offsets, so the expected box is known by hand."""

    def __init__(self, prior_index: int) -> None:
        super().__init__("mobilenet0.25")
        self.prior_index = prior_index

    def forward(self, x):
        count = prior_boxes(x.shape[2], x.shape[3]).shape[0]
        logits = torch.zeros(x.shape[0], count, 2)
        logits[:, :, 0] = 10.0
        logits[:, self.prior_index] = torch.tensor([-10.0, 10.0])
        return torch.zeros(x.shape[0], count, 4), logits, torch.zeros(x.shape[0], count, 10)


def test_boxes_are_mapped_back_to_frame_coordinates():
    # A 720×1280 frame is detected at 360×640. Prior 7200 is the first of stride 16: centre (8, 8),
    # size 64 in detector pixels → (-24, -24, 40, 40) → ×2 in the frame, clipped at 0.
    assert detection_size(720, 1280, 640) == (360, 640)
    detector = RetinaFaceDetector(_OnePriorNet(prior_index=7200),
                                  normalisation=NORMALISATION["retinaface-pytorch"], max_side=640)
    [found] = detector.detect(np.zeros((1, 720, 1280, 3), dtype=np.uint8))
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, [0, 0, 80, 80], atol=1e-3)
    np.testing.assert_allclose(found[0].landmarks, np.full((5, 2), 16.0), atol=1e-3)
    assert found[0].score > 0.99


def test_small_frames_are_not_enlarged():
    assert detection_size(240, 320, 640) == (240, 320)
    assert detection_size(1080, 1920, 640) == (360, 640)


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
def test_openvino_backend_gives_the_networks_outputs_and_the_same_detections(backbone, resnet50):
    net = resnet50 if backbone == "resnet50" else random_retinaface("mobilenet0.25", seed=4)
    options = dict(normalisation=NORMALISATION["pytorch-retinaface"], max_side=160, score_threshold=0.5)
    reference = RetinaFaceDetector(net, **options)
    compiled = RetinaFaceDetector(net, backend="openvino", **options)
    rng = np.random.default_rng(5)
    for height, width in ((64, 96), (96, 64)):  # one compiled network per frame size
        pixels = rng.integers(0, 256, size=(2, height, width, 3), dtype=np.uint8)
        with torch.inference_mode():
            expected = net.eval()(reference._prepare(pixels, (height, width)))
        # The compiled network normalises uint8 RGB frames itself, in its first operations.
        for got, want in zip(compiled._forward(pixels), expected):
            assert got.shape == want.shape
            scale = float(want.abs().max())  # random ResNet50 weights reach the thousands on pixel input
            assert torch.allclose(got, want, atol=1e-5 * scale, rtol=1e-4)
    if backbone == "resnet50":
        return  # random ResNet50 weights fire on thousands of priors: NMS near-ties make the kept set fragile
    frames = _frames(3)
    together = list(zip(reference.detect(frames), compiled.detect(frames)))
    assert sum(len(a) for a, _ in together) > 0, "random weights should fire somewhere at threshold 0.5"
    for want, got in together:
        assert len(got) == len(want)
        for a, b in zip(want, got):
            np.testing.assert_allclose(a.box, b.box, atol=1e-2)
            assert abs(a.score - b.score) < 1e-4


def test_openvino_backend_is_cpu_only_and_backends_are_named():
    net = random_retinaface("mobilenet0.25", seed=4)
    with pytest.raises(ValueError, match="CPU only"):
        RetinaFaceDetector(net, normalisation=NORMALISATION["pytorch-retinaface"], device="meta", backend="openvino")
    with pytest.raises(ValueError, match="unknown RetinaFace backend"):
        RetinaFaceDetector(net, normalisation=NORMALISATION["pytorch-retinaface"], backend="onnx")


@pytest.mark.parametrize("family", sorted(NORMALISATION))
@pytest.mark.parametrize("shape", [(2, 90, 160), (2, 720, 1280)])
def test_cpu_preparation_matches_the_normalisation_formula(family, shape):
    import cv2

    norm = NORMALISATION[family]
    detector = RetinaFaceDetector(random_retinaface("mobilenet0.25", seed=4), normalisation=norm, max_side=640)
    frames = np.random.default_rng(0).integers(0, 255, size=(*shape, 3), dtype=np.uint8)
    size = detection_size(shape[1], shape[2], 640)
    batch = detector._prepare(frames, size)
    resized = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])
    pixels = resized[..., ::-1] if norm.channels == "BGR" else resized
    expected = (pixels.astype(np.float64) * norm.scale - np.array(norm.mean)) / np.array(norm.std)
    assert tuple(batch.shape) == (shape[0], 3, *size)
    np.testing.assert_allclose(batch.numpy(), expected.transpose(0, 3, 1, 2), atol=1e-4)
