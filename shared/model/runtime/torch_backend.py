"""The CNN trunk in plain PyTorch: CPU fp32 (optionally bf16 autocast), CUDA with autocast and
channels_last."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch
from torch import Tensor, nn

from shared.model.runtime.preprocess import Preprocessor

AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchTrunk:
    """Runs `model.embed` on `device`. Moves the model there (and to channels_last if asked)."""

    backend = "torch"

    def __init__(
        self, model: nn.Module, *, device: torch.device, precision: str, channels_last: bool, preprocess: Preprocessor
    ) -> None:
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"torch backend precision must be one of {sorted(AUTOCAST_DTYPES)}, got {precision!r}")
        self.model = model.to(device).eval()
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.preprocess = preprocess

    def _prepare(self, batch: Tensor) -> Tensor:
        if self.device.type == "cuda" and batch.device != self.device:
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        x = self.preprocess.normalise(batch)  # on the device: uint8 crosses the bus, not float32
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self) -> torch.autocast:
        dtype = AUTOCAST_DTYPES[self.precision]
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _cudnn(self) -> ContextManager:
        """On CUDA: let cuDNN pick kernels for our fixed shapes, and keep fp32 free of TF32."""
        if self.device.type != "cuda":
            return nullcontext()
        return torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=self.precision != "fp32")

    def embed(self, batch: Tensor, *, streams: int | None = None) -> Tensor:
        """(N, 3, S, S) uint8 in network channel order → (N, D) float32 on the CPU. `streams` is
        OpenVINO's notion: torch's pool is sized per process (`ThreadBudget.torch_threads`)."""
        with torch.inference_mode(), self._cudnn(), self._autocast():
            feats = self.model.embed(self._prepare(batch))
        return feats.float().cpu()

    def feature_map(self, batch: Tensor) -> Tensor:
        """(N, 3, S, S) uint8 → (N, D, h, w) float32 on the CPU (for heatmaps; always fp32)."""
        with torch.inference_mode(), self._cudnn():
            return self.model.feature_map(self._prepare(batch)).float().cpu()
