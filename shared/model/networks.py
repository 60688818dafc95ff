"""The two video classifiers: the seed's exact ResNeXt-LSTM layout and this project's own.

Both share one interface: a CNN trunk turns normalised frames into feature maps, an adaptive
average pool turns those into one vector per frame, and `classify_windows` turns a window of
frame vectors into two logits (index 0 = FAKE, index 1 = REAL). This module does no I/O, reads no
configuration and logs nothing; `shared.model.checkpoints` loads state into these networks.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shared.model.resnet import resnext50_32x4d_trunk

SEED_KIND = "seed-resnext-lstm"
PROJECT_KIND = "resnext-lstm"
BACKBONES = ("resnext50_32x4d", "tiny")


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _tiny_trunk() -> nn.Sequential:
    """A four-stage strided CNN (64 features, 7×7 at 112 input) for fast CPU training tests."""
    return nn.Sequential(*_conv_bn_relu(3, 16), *_conv_bn_relu(16, 32), *_conv_bn_relu(32, 48), *_conv_bn_relu(48, 64))


def _trunk(backbone: str) -> tuple[nn.Sequential, int]:
    if backbone == "resnext50_32x4d":
        return resnext50_32x4d_trunk(), 2048
    if backbone == "tiny":
        return _tiny_trunk(), 64
    raise ValueError(f"unknown backbone {backbone!r}; expected one of {', '.join(BACKBONES)}")


class _Trunked(nn.Module):
    """The part both networks share: trunk → feature map → pooled frame vector."""

    feature_dim: int

    def _trunk_module(self) -> nn.Module:
        raise NotImplementedError

    def feature_map(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) normalised frames → (N, D, h, w) feature maps."""
        return self._trunk_module()(x)

    def embed(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) normalised frames → (N, D) average-pooled features."""
        return F.adaptive_avg_pool2d(self.feature_map(x), 1).flatten(1)

    def classify_windows(self, feats: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, 3, S, S) normalised frames → (B, 2) logits."""
        b, t = x.shape[:2]
        feats = self.embed(x.flatten(0, 1))
        return self.classify_windows(feats.reshape(b, t, -1))


class SeedResNeXtLSTM(_Trunked):
    """The seed's network, parameter for parameter (322 state_dict tensors).

    `lstm` is built with `bias=False`, as the seed's positional `bidirectional=False` did. The seed
    fed `(batch, frames, 2048)` to a sequence-first LSTM, so each frame gets one LSTM step from a
    zero state; the window score is `linear1` of the mean of those per-frame outputs.
    """

    def __init__(self, *, num_classes: int = 2, latent_dim: int = 2048, hidden_dim: int = 2048) -> None:
        super().__init__()
        self.feature_dim = latent_dim
        self.model = resnext50_32x4d_trunk()
        self.lstm = nn.LSTM(latent_dim, hidden_dim, 1, bias=False)
        self.dp = nn.Dropout(0.4)
        self.linear1 = nn.Linear(hidden_dim, num_classes)

    def _trunk_module(self) -> nn.Module:
        return self.model

    def frame_outputs(self, feats: Tensor) -> Tensor:
        """(N, D) frame features → (N, H): one LSTM step from zero state per frame.

        Frames are independent, so overlapping windows can share these outputs. With a zero
        state and no biases the step is h = σ(W_o x) ⊙ tanh(σ(W_i x) ⊙ tanh(W_g x)): the forget
        gate and `weight_hh_l0` multiply zeros, so only the i, g and o rows of `weight_ih_l0` are
        used (3/8 of nn.LSTM's multiply-adds, the same result).
        """
        hidden = self.lstm.hidden_size
        w_i, _, w_g, w_o = self.lstm.weight_ih_l0.split(hidden)  # gate order i, f, g, o
        # three products with views of the weight (concatenating would copy 48 MB per call)
        i, g, o = (F.linear(feats, w) for w in (w_i, w_g, w_o))
        return torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))

    def classify_outputs(self, outputs: Tensor) -> Tensor:
        """(W, T, H) per-frame LSTM outputs → (W, 2) logits: mean over T, dropout, linear1."""
        return self.linear1(self.dp(outputs.mean(dim=1)))

    def classify_windows(self, feats: Tensor) -> Tensor:
        """(W, T, D) window features → (W, 2) logits with the seed's training-time semantics."""
        w, t, d = feats.shape
        outputs = self.frame_outputs(feats.reshape(w * t, d)).reshape(w, t, -1)
        return self.classify_outputs(outputs)

    def cam_weights(self) -> Tensor:
        """(2, 2048) `linear1.weight`, applied to the feature map as the seed's heatmap did."""
        return self.linear1.weight.detach()


class ResNeXtLSTM(_Trunked):
    """This project's classifier: a trunk, a batch-first temporal LSTM with biases, a linear head.

    The window's logits come from the **mean of the LSTM outputs over the T frames** (every frame's
    context-aware state counts, like the seed's mean, instead of only the last one).
    """

    def __init__(self, *, backbone: str = "resnext50_32x4d", hidden_size: int = 512, dropout: float = 0.4) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.trunk, self.feature_dim = _trunk(backbone)
        self.lstm = nn.LSTM(self.feature_dim, hidden_size, num_layers=1, batch_first=True, bias=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 2)

    def _trunk_module(self) -> nn.Module:
        return self.trunk

    def classify_windows(self, feats: Tensor) -> Tensor:
        """(W, T, D) window features → (W, 2) logits: LSTM over T, mean of outputs, head."""
        outputs, _ = self.lstm(feats)
        return self.head(self.dropout(outputs.mean(dim=1)))

    def cam_weights(self) -> Tensor:
        """(2, D): the head composed with the LSTM's cell-input (g) gate input weights.

        An LSTM sits between the features and the head, so no exact linear map exists; this is the
        first-order path from a frame's features to the logits through the candidate cell state.
        """
        hidden = self.head.in_features
        w_g = self.lstm.weight_ih_l0[2 * hidden : 3 * hidden]
        return (self.head.weight @ w_g).detach()


class _SpecLike(Protocol):
    kind: str
    backbone: str
    hidden_size: int


def seed_resnext_lstm() -> SeedResNeXtLSTM:
    """The seed's layout with fresh (untrained) weights."""
    return SeedResNeXtLSTM()


def resnext_lstm(*, backbone: str = "resnext50_32x4d", hidden_size: int = 512, dropout: float = 0.4) -> ResNeXtLSTM:
    """This project's network with fresh (untrained) weights."""
    return ResNeXtLSTM(backbone=backbone, hidden_size=hidden_size, dropout=dropout)


def build_model(spec: _SpecLike) -> nn.Module:
    """An untrained network of the kind, backbone and hidden size a `ModelSpec` names."""
    if spec.kind == SEED_KIND:
        return seed_resnext_lstm()
    if spec.kind == PROJECT_KIND:
        return resnext_lstm(backbone=spec.backbone, hidden_size=spec.hidden_size)
    raise ValueError(f"unknown model kind {spec.kind!r}; expected {SEED_KIND!r} or {PROJECT_KIND!r}")
