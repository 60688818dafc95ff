"""The CNN trunk (trunk + average pool) compiled with OpenVINO for the CPU, fp32 or NNCF int8.

Conversion goes through `torch.export` (faster than tracing) with a dynamic batch; the IR is
cached on disk keyed by the checkpoint's sha256, so only the first run pays for conversion and
quantization. Inference splits each batch over the compiled model's optimal number of
asynchronous requests (THROUGHPUT hint: one stream per core pair).
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from shared.model.runtime.openvino_loader import import_nncf, import_openvino
from shared.model.runtime.preprocess import Preprocessor

log = logging.getLogger(__name__)
OV_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def nncf_available() -> bool:
    """NNCF (int8 post-training quantization) is optional; checked without importing it (slow)."""
    return importlib.util.find_spec("nncf") is not None


class _Embed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.embed(x)


def convert_trunk(model: nn.Module, *, input_size: int):
    """An `openvino.Model` computing `model.embed` for (N, 3, S, S) float32 input, N dynamic."""
    ov = import_openvino()

    example = torch.zeros(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with torch.no_grad():
        exported = torch.export.export(_Embed(model).eval(), (example,), dynamic_shapes=({0: batch},))
    ov_model = ov.convert_model(exported)
    ov_model.reshape([-1, 3, input_size, input_size])
    return ov_model


def quantize_trunk(ov_model, calibration: np.ndarray):
    """NNCF post-training int8 quantization on normalised (N, 3, S, S) float32 calibration input."""
    nncf = import_nncf()

    chunks = [calibration[i : i + 8] for i in range(0, len(calibration), 8)]
    return nncf.quantize(ov_model, nncf.Dataset(chunks), subset_size=len(calibration), fast_bias_correction=True)


def cached_ir(path: Path | None, make: Callable[[], object]):
    """Read the IR at `path` if present, else make it and try to save it there."""
    ov = import_openvino()

    if path is not None and path.is_file():
        return ov.Core().read_model(str(path))
    ov_model = make()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{path.name}")
            ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
            tmp.replace(path)
        except OSError as exc:  # a read-only weights folder only costs the next run the conversion
            log.info("could not cache OpenVINO IR at %s: %s", path, exc)
    return ov_model


class OpenVINOTrunk:
    """Runs a compiled OpenVINO trunk on the CPU with the THROUGHPUT hint."""

    backend = "openvino"

    def __init__(self, ov_model, *, precision: str, preprocess: Preprocessor) -> None:
        ov = import_openvino()
        config = {"INFERENCE_PRECISION_HINT": OV_HINTS[precision], "PERFORMANCE_HINT": "THROUGHPUT"}
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        count = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(max(count, 1))]
        self.precision = precision
        self.preprocess = preprocess
        self._lock = threading.Lock()  # trunks are cached per process and may be shared by threads

    def embed(self, batch: Tensor) -> Tensor:
        """(N, 3, S, S) uint8 in network channel order → (N, D) float32."""
        x = self.preprocess.normalise(batch).numpy()
        parts = np.array_split(x, min(len(self.requests), len(x)))
        outputs = []
        with self._lock:
            for request, part in zip(self.requests, parts):
                request.start_async({0: part})
            for request, _ in zip(self.requests, parts):
                request.wait()
                outputs.append(request.get_output_tensor(0).data.copy())
        return torch.from_numpy(np.concatenate(outputs))
