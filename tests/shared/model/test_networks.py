from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from shared.model.networks import ResNeXtLSTM, SeedResNeXtLSTM, build_model, resnext_lstm


@pytest.fixture(scope="module")
def seed() -> SeedResNeXtLSTM:
    torch.manual_seed(0)
    return SeedResNeXtLSTM().eval()


def test_seed_state_dict_layout(seed: SeedResNeXtLSTM) -> None:
    state = seed.state_dict()
    assert len(state) == 322
    assert {"model.0.weight", "model.1.running_mean", "model.4.0.conv1.weight", "model.7.2.bn3.weight"} <= set(state)
    assert [k for k in state if k.startswith(("lstm", "linear1"))] == [
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "linear1.weight", "linear1.bias",
    ]


def test_seed_shapes(seed: SeedResNeXtLSTM) -> None:
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert seed.feature_map(x).shape == (2, 2048, 4, 4)
        assert seed.embed(x).shape == (2, 2048)
    assert seed.cam_weights().shape == (2, 2048)


def test_seed_frames_are_independent_and_order_free(seed: SeedResNeXtLSTM) -> None:
    """One LSTM step per frame from zero state: hh weights and frame order play no part."""
    feats = torch.randn(3, 5, 2048)
    with torch.no_grad():
        before = seed.classify_windows(feats)
        shuffled = seed.classify_windows(feats[:, torch.randperm(5)])
        seed.lstm.weight_hh_l0.add_(1.0)
        after_hh = seed.classify_windows(feats)
        seed.lstm.weight_hh_l0.sub_(1.0)
    torch.testing.assert_close(before, shuffled)
    torch.testing.assert_close(before, after_hh)


def test_forward_equals_embed_then_classify() -> None:
    torch.manual_seed(1)
    model = resnext_lstm(backbone="tiny", hidden_size=8).eval()
    x = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        expected = model.classify_windows(model.embed(x.flatten(0, 1)).reshape(2, 4, -1))
        torch.testing.assert_close(model(x), expected)


def test_project_lstm_is_temporal_with_biases() -> None:
    torch.manual_seed(2)
    model = resnext_lstm(backbone="tiny", hidden_size=8).eval()
    assert model.lstm.batch_first and model.lstm.bias
    feats = torch.randn(1, 6, model.feature_dim)
    with torch.no_grad():
        assert not torch.allclose(model.classify_windows(feats), model.classify_windows(feats.flip(1)))
    assert model.cam_weights().shape == (2, model.feature_dim)


def test_build_model_from_spec() -> None:
    assert isinstance(build_model(SimpleNamespace(kind="seed-resnext-lstm", backbone="", hidden_size=0)), SeedResNeXtLSTM)
    tiny = build_model(SimpleNamespace(kind="resnext-lstm", backbone="tiny", hidden_size=12))
    assert isinstance(tiny, ResNeXtLSTM) and tiny.head.in_features == 12
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model(SimpleNamespace(kind="vit", backbone="tiny", hidden_size=1))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model(SimpleNamespace(kind="resnext-lstm", backbone="vgg", hidden_size=1))


def test_seed_frame_outputs_equal_one_real_lstm_step_per_frame():
    from shared.model.networks import SeedResNeXtLSTM

    torch.manual_seed(1)
    model = SeedResNeXtLSTM().eval()
    feats = torch.randn(5, 2048)
    with torch.inference_mode():
        expected, _ = model.lstm(feats.unsqueeze(0))  # time axis of length 1, the frames as batch
        assert torch.allclose(model.frame_outputs(feats), expected.squeeze(0), atol=1e-6)
        windows = feats[None].expand(2, 5, 2048)
        assert torch.allclose(model.classify_windows(windows),
                              model.linear1(expected.squeeze(0).mean(0)).expand(2, 2), atol=1e-6)
