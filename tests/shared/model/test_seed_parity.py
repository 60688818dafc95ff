"""Seed parity: our loader + crops + fp32 Embedder + classify_windows against an independent
reference written from the facts in seed-model.md (BGR into ToPILImage→Resize→ToTensor→Normalize,
per-frame LSTM step from zero state written with the weight matrices, mean over frames, linear1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import transforms

from shared.model.checkpoints import load_model
from shared.model.crops import crop_faces
from shared.model.networks import SeedResNeXtLSTM
from shared.model.runtime import build_embedder
from tests.media import animated_frames

SEQ = 20
FRAMES = 24
# square boxes on the two faces of the 480×240 animated frames (one track each)
BOXES = (np.array([80, 28, 136, 84]), np.array([330, 62, 394, 126]))
STARTS = [0, 4]
SEED_FILE = "model_87_acc_20_frames_final_data.pt"


def _seed_state() -> dict:
    torch.manual_seed(1234)
    model = SeedResNeXtLSTM()
    with torch.no_grad():
        for name, buf in model.named_buffers():  # trained-looking BatchNorm statistics
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
        model.linear1.weight.normal_(0, 0.3)
    return model.state_dict()


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory):
    state = _seed_state()
    path = tmp_path_factory.mktemp("weights") / SEED_FILE
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return animated_frames(photos=("astronaut", "grace_hopper"), width=480, height=240, count=FRAMES)


def _reference_inputs(frames_rgb: np.ndarray, box: np.ndarray) -> torch.Tensor:
    """The seed's chain on OpenCV-style BGR frames: tight box crop, no conversion, torchvision."""
    chain = transforms.Compose(
        [
            transforms.ToPILImage(),
            transforms.Resize((112, 112)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    x1, y1, x2, y2 = box
    bgr = frames_rgb[:, :, :, ::-1]
    return torch.stack([chain(np.ascontiguousarray(f[y1:y2, x1:x2])) for f in bgr])


def _reference_probabilities(state: dict, inputs: torch.Tensor, starts: list[int]) -> torch.Tensor:
    model = SeedResNeXtLSTM()
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        feats = model.model(inputs).mean(dim=(2, 3))
        w_i, _w_f, w_g, w_o = state["lstm.weight_ih_l0"].chunk(4, dim=0)
        h = torch.sigmoid(feats @ w_o.T) * torch.tanh(torch.sigmoid(feats @ w_i.T) * torch.tanh(feats @ w_g.T))
        pooled = torch.stack([h[s : s + SEQ].mean(dim=0) for s in starts])
        logits = pooled @ state["linear1.weight"].T + state["linear1.bias"]
    return torch.softmax(logits, dim=1)[:, 0]


def test_seed_layout_has_322_tensors_and_no_lstm_bias(seed_file) -> None:
    _, state = seed_file
    assert len(state) == 322
    assert not [k for k in state if k.startswith("lstm.bias")]
    assert state["lstm.weight_ih_l0"].shape == (8192, 2048)
    assert state["linear1.weight"].shape == (2, 2048)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_pipeline_matches_reference_probabilities(seed_file, frames, backend: str) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    path, state = seed_file
    model, spec = load_model(path)
    assert (spec.kind, spec.sequence_length, spec.channel_order, spec.reported_accuracy) == (
        "seed-resnext-lstm",
        SEQ,
        "BGR",
        87.0,
    )
    embedder = build_embedder(model, spec, device=torch.device("cpu"), precision="fp32", backend=backend)
    assert (embedder.backend, embedder.precision) == (backend, "fp32")
    ours, expected, last = [], [], []
    for box in BOXES:
        crops = np.concatenate([crop_faces(f, [box], size=spec.input_size, margin=0.0) for f in frames])
        feats = embedder(crops)
        ours.append(embedder.fake_probabilities(torch.stack([feats[s : s + SEQ] for s in STARTS])))
        expected.append(_reference_probabilities(state, _reference_inputs(frames, box), STARTS))
        outputs = model.frame_outputs(feats)[[s + SEQ - 1 for s in STARTS]][:, None]
        last.append(torch.softmax(model.classify_outputs(outputs), dim=1)[:, 0])
    ours, expected, last = torch.cat(ours), torch.cat(expected), torch.cat(last)

    assert torch.max(torch.abs(ours - expected)).item() <= 1e-5
    # the comparison must be able to fail: the faces score differently, and the web app's
    # last-frame rule gives other answers than the training-time mean
    assert float(expected.max() - expected.min()) > 1e-3
    assert torch.max(torch.abs(last - expected)).item() > 1e-4
