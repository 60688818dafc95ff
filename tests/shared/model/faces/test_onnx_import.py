"""The published ONNX MobileNet0.25 weights in the own torch RetinaFace: same outputs, same faces, typed errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.errors import CheckpointFormatError, CheckpointMismatchError
from shared.model.faces.checkpoint import load_detector_weights
from shared.model.faces.onnx_import import state_dict_from_onnx
from shared.model.faces.priors import decode_boxes, prior_boxes, select
from shared.model.faces.retinaface import RetinaFace
from tests.media import face_photo

WEIGHTS = Path(__file__).resolve().parents[4] / "weights" / "retinaface-mobilenet0.25.onnx"
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)  # Pytorch_Retinaface's input normalisation
# (height, width): one a multiple of the coarsest stride 32, one not (rounding in the strided convs and
# the FPN's nearest upsampling between uneven levels).
SIZES = [(320, 320), (333, 250)]
PHOTOS = ["astronaut", "grace_hopper"]
TOLERANCE = 1e-4
LEAKY_SLOPE_0_1 = b"alpha\x15\xcd\xcc\xcc\x3d"  # an ONNX LeakyRelu's `alpha` attribute holding 0.1 (float32)


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    if not WEIGHTS.is_file():
        pytest.skip(f"{WEIGHTS} is absent: run `deepfake weights fetch retinaface-mobilenet0.25`")
    return WEIGHTS


@pytest.fixture(scope="module")
def torch_net(onnx_path) -> RetinaFace:
    loaded = load_detector_weights(onnx_path)
    assert (loaded.backbone, loaded.family, loaded.family_source) == ("mobilenet0.25", "pytorch-retinaface", "onnx")
    assert loaded.normalisation.channels == "BGR"
    return loaded.net


@pytest.fixture(scope="module")
def onnx_net(onnx_path):
    """The ONNX file as OpenVINO runs it, in fp32 (its default on AMX CPUs would be bf16)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: tuple(torch.from_numpy(np.array(compiled(x.numpy())[i])) for i in range(3))


def _input(photo: str, size: tuple[int, int]) -> torch.Tensor:
    height, width = size
    rgb = np.asarray(Image.fromarray(face_photo(photo)).resize((width, height), Image.BILINEAR), dtype=np.float32)
    bgr = rgb[..., ::-1] - MEAN_BGR
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


def _torch_outputs(net: RetinaFace, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        loc, logits, landmarks = net(x)
    return loc, torch.softmax(logits, dim=-1), landmarks


def _faces(outputs: tuple[torch.Tensor, ...], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    loc, conf, _ = outputs
    boxes = decode_boxes(loc, prior_boxes(*size), size=size)
    [(kept, scores, _)] = select(boxes, conf[..., 1], score_threshold=0.9)
    return kept, scores


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    width = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp(min=0)
    height = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp(min=0)
    inter = width * height
    areas = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (areas - inter))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("photo", PHOTOS)
def test_torch_network_reproduces_the_onnx_outputs(torch_net, onnx_net, photo, size):
    x = _input(photo, size)
    for name, ours, theirs in zip(("loc", "conf", "landmarks"), _torch_outputs(torch_net, x), onnx_net(x)):
        assert ours.shape == theirs.shape, name
        difference = float((ours - theirs).abs().max())
        assert difference <= TOLERANCE, f"{name}: max abs difference {difference:.2e}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("photo", PHOTOS)
def test_both_find_the_one_face_in_the_same_place(torch_net, onnx_net, photo, size):
    x = _input(photo, size)
    ours, our_scores = _faces(_torch_outputs(torch_net, x), size)
    theirs, their_scores = _faces(onnx_net(x), size)
    assert len(ours) == len(theirs) == 1, "each photo shows one face"
    assert float(our_scores[0]) > 0.9 and float(their_scores[0]) > 0.9
    assert _iou(ours[0], theirs[0]) > 0.99


def test_every_tensor_comes_from_the_file_and_batch_norms_are_identity(onnx_path):
    state = state_dict_from_onnx(onnx_path)
    assert set(state) == set(RetinaFace("mobilenet0.25").state_dict())
    assert torch.equal(state["body.stage1.0.1.weight"], torch.ones(8))
    assert torch.equal(state["body.stage1.0.1.running_mean"], torch.zeros(8))
    scale = torch.sqrt(state["body.stage1.0.1.running_var"] + 1e-5)  # BatchNorm2d's default eps
    assert torch.allclose(scale, torch.ones(8), atol=1e-7)
    assert state["ClassHead.2.conv1x1.weight"].shape == (4, 64, 1, 1)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 4096, b"not an onnx file\n" * 64, np.random.default_rng(0).bytes(65536)],
    ids=["empty", "zeros", "text", "random"],
)
def test_a_file_that_is_not_onnx_is_a_format_error(tmp_path, content):
    path = tmp_path / "retinaface-mobilenet0.25.onnx"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError):
        load_detector_weights(path)


@pytest.mark.parametrize("keep", [0.5, 0.99], ids=["half", "last-bytes-cut"])
def test_a_truncated_copy_is_a_format_error(tmp_path, onnx_path, keep):
    data = onnx_path.read_bytes()
    path = tmp_path / onnx_path.name
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointFormatError, match="not an ONNX model"):
        state_dict_from_onnx(path)


def test_a_missing_file_or_a_directory_is_a_format_error(tmp_path):
    with pytest.raises(CheckpointFormatError):
        state_dict_from_onnx(tmp_path / "absent.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(CheckpointFormatError, match="not a regular file"):
        state_dict_from_onnx(tmp_path / "folder.onnx")


def test_a_file_naming_external_data_is_refused_before_it_is_read(tmp_path, onnx_path):
    # An unknown field (number 99) naming a `location`: OpenVINO would open such a path wherever it points.
    path = tmp_path / onnx_path.name
    path.write_bytes(onnx_path.read_bytes() + b"\x9a\x06\x0f" + b"location=/x/y/z")
    with pytest.raises(CheckpointFormatError, match="external data"):
        state_dict_from_onnx(path)


def test_another_network_is_a_mismatch_naming_what_differs(tmp_path, onnx_path):
    data = onnx_path.read_bytes()
    assert data.count(LEAKY_SLOPE_0_1) == 41
    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes(data.replace(b"conf", b"cnof"))
    with pytest.raises(CheckpointMismatchError, match=r"no output\(s\) \['conf'\]"):
        state_dict_from_onnx(renamed)
    steeper = tmp_path / "steeper.onnx"
    steeper.write_bytes(data.replace(LEAKY_SLOPE_0_1, b"alpha\x15\x00\x00\x80\x3e", 1))  # 0.25
    with pytest.raises(CheckpointMismatchError, match="LeakyReLU slope"):
        state_dict_from_onnx(steeper)


def test_onnx_weights_are_mobilenet_only(onnx_path):
    with pytest.raises(CheckpointMismatchError, match="only RetinaFace-mobilenet0.25"):
        load_detector_weights(onnx_path, backbone="resnet50")
