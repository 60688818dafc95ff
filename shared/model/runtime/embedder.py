"""The Embedder: uint8 crops in, per-frame feature vectors out, in the chosen backend/precision."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from shared.model.checkpoints import ModelSpec
from shared.model.runtime.preprocess import Preprocessor
from shared.model.types import Reason


class Trunk(Protocol):
    backend: str
    precision: str

    def embed(self, batch: Tensor, *, streams: int | None = None) -> Tensor: ...


class Embedder:
    """Callable: (N, S, S, 3) uint8 RGB crops → (N, D) float32 CPU features, in batches.

    `classify_windows` and `feature_maps` always run the PyTorch model in fp32.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        spec: ModelSpec,
        trunk: Trunk,
        device: torch.device,
        batch_size: int,
        warnings: list[Reason] | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.trunk = trunk
        self.device = device
        self.batch_size = batch_size
        self.preprocess = Preprocessor(
            channel_order=spec.channel_order, mean=spec.mean, std=spec.std, size=spec.input_size
        )
        self.warnings: list[Reason] = list(warnings or [])

    @property
    def precision(self) -> str:
        return self.trunk.precision

    @property
    def backend(self) -> str:
        return self.trunk.backend

    @property
    def feature_dim(self) -> int:
        return int(self.model.feature_dim)

    def __call__(self, crops: np.ndarray | Tensor, *, streams: int | None = None) -> Tensor:
        """Crops as (N, S, S, 3) uint8 RGB on the host, or (N, 3, S, S) uint8 RGB tensors where they
        were cut (on the GPU they stay there). `streams` caps how many of the trunk's parallel
        streams run the batch (None: all)."""
        batch = self.preprocess.to_uint8_nchw(crops)
        if len(batch) == 0:
            return torch.empty(0, self.feature_dim)
        chunks = [self.trunk.embed(batch[i : i + self.batch_size], streams=streams)
                  for i in range(0, len(batch), self.batch_size)]
        return torch.cat(chunks)

    def feature_maps(self, crops: np.ndarray) -> Tensor:
        """(N, S, S, 3) uint8 RGB → (N, D, h, w) float32 CPU feature maps (fp32 PyTorch, for CAM)."""
        x = self.preprocess(crops).to(self.device)
        with torch.inference_mode():
            return self.model.feature_map(x).float().cpu()

    def classify_windows(self, feats: Tensor) -> Tensor:
        """(W, T, D) window features → (W, 2) float32 CPU logits (fp32 on the model's device)."""
        with torch.inference_mode():
            return self.model.classify_windows(feats.to(self.device, torch.float32)).float().cpu()

    def fake_probabilities(self, feats: Tensor) -> Tensor:
        """(W, T, D) → (W,) softmax probability of the spec's FAKE class."""
        return torch.softmax(self.classify_windows(feats), dim=1)[:, self.spec.fake_index]
