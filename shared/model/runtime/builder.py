"""Choosing the backend and precision for an Embedder."""
from __future__ import annotations

import torch
from torch import nn

from shared.model.checkpoints import ModelSpec
from shared.model.errors import InvalidOptionsError
from shared.model.runtime.devices import cpu_features, native_bf16
from shared.model.runtime.embedder import PRECISIONS, Embedder
from shared.model.runtime.preprocess import Preprocessor
from shared.model.runtime.torch_backend import TorchTrunk
from shared.model.types import Reason


def _preprocessor(spec: ModelSpec) -> Preprocessor:
    return Preprocessor(channel_order=spec.channel_order, mean=spec.mean, std=spec.std, size=spec.input_size)


def _cuda_trunk(model: nn.Module, spec: ModelSpec, device: torch.device, precision: str) -> tuple[TorchTrunk, list[Reason]]:
    """CUDA: autocast fp16 by default (bf16 on request where supported), channels_last always."""
    warnings: list[Reason] = []
    chosen = {"auto": "fp16", "fp32": "fp32", "bf16": "bf16", "int8": "fp16"}[precision]
    if precision == "int8":
        warnings.append(Reason("precision_unsupported", "int8 is not implemented on CUDA; using fp16 autocast"))
    if chosen == "bf16" and not torch.cuda.is_bf16_supported():
        warnings.append(Reason("precision_unsupported", "this GPU has no bf16; using fp16 autocast"))
        chosen = "fp16"
    trunk = TorchTrunk(model, device=device, precision=chosen, channels_last=True, preprocess=_preprocessor(spec))
    return trunk, warnings


def _cpu_torch_trunk(model: nn.Module, spec: ModelSpec, precision: str) -> tuple[TorchTrunk, list[Reason]]:
    warnings: list[Reason] = []
    if precision == "bf16" and not native_bf16(cpu_features()):
        warnings.append(
            Reason("precision_emulated", "this CPU has no native bf16 (AVX512-BF16/AMX); bf16 is emulated and slow")
        )
    trunk = TorchTrunk(
        model, device=torch.device("cpu"), precision=precision, channels_last=True, preprocess=_preprocessor(spec)
    )
    return trunk, warnings


def build_embedder(
    model: nn.Module, spec: ModelSpec, *, device: torch.device, precision: str = "auto", batch_size: int = 32
) -> Embedder:
    """An Embedder for `model` on `device` at `precision` (auto|fp32|bf16|int8)."""
    if precision not in PRECISIONS:
        raise InvalidOptionsError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if batch_size < 1:
        raise InvalidOptionsError(f"batch size must be at least 1, got {batch_size}")
    if device.type == "cuda":
        trunk, warnings = _cuda_trunk(model, spec, device, precision)
    else:
        trunk, warnings = _cpu_torch_trunk(model, spec, "fp32" if precision in ("auto", "int8") else precision)
    return Embedder(model=model, spec=spec, trunk=trunk, device=device, batch_size=batch_size, warnings=warnings)
