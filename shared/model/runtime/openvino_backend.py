"""The CNN trunk (trunk + average pool) compiled with OpenVINO for the CPU, fp32 or NNCF int8.

Conversion goes through `torch.export` (faster than tracing) with a dynamic batch; the IR is
cached on disk keyed by the checkpoint's sha256, so only the first run pays for conversion and
quantization. Inference splits each batch over the compiled model's optimal number of
asynchronous requests (THROUGHPUT hint: one stream per core pair).
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from shared.model.runtime.model_cache import writable_dir
from shared.model.runtime.openvino_loader import import_nncf, import_openvino
from shared.model.runtime.preprocess import Preprocessor

OV_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}
CALIBRATION_BATCH = 8  # crops per NNCF calibration sample (see quantize_trunk)
# torch.export traces in process-global state: two threads exporting at once (a worker's preload of the
# default engine and a job that names another checkpoint) fail with "ProxyTorchDispatchMode slot already
# occupied". Conversions in one process take turns.
_EXPORT_LOCK = threading.Lock()


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
    with _EXPORT_LOCK, torch.no_grad():
        exported = torch.export.export(_Embed(model).eval(), (example,), dynamic_shapes=({0: batch},))
        ov_model = ov.convert_model(exported)
    ov_model.reshape([-1, 3, input_size, input_size])
    return ov_model


def quantize_trunk(ov_model, calibration: np.ndarray):
    """NNCF post-training int8 quantization on normalised (N, 3, S, S) float32 calibration input.

    Every crop is used, in batches of `CALIBRATION_BATCH`. NNCF counts each batch as one sample
    ("6 samples" for 48 crops): an activation's range is the mean over batches of its per-batch
    minimum and maximum. One crop per sample gives narrower ranges; on the seed network (random
    weights) that measured further from fp32 (feature error 1.9 % mean, 3.3 % max, against 1.6 %
    and 1.8 %), so the batches stay until a trained checkpoint says otherwise.
    """
    nncf = import_nncf()

    batches = [calibration[i : i + CALIBRATION_BATCH] for i in range(0, len(calibration), CALIBRATION_BATCH)]
    return nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=len(batches), fast_bias_correction=True)


class OpenVINOTrunk:
    """Runs a compiled OpenVINO trunk on the CPU with the THROUGHPUT hint."""

    backend = "openvino"

    def __init__(self, ov_model, *, precision: str, preprocess: Preprocessor, compiled_dir: Path | None = None,
                 threads: int = 0) -> None:
        """`compiled_dir`: OpenVINO keeps the compiled model there (its CACHE_DIR) and imports it next time:
        0.24 s instead of 0.79 s for int8 here, 0.20 s instead of 0.26 s for fp32. `threads` > 0 caps
        its inference threads (the process's thread budget) and leaves them unpinned: pinned threads
        that share cores with the decoder, the face detector or other workers wait on each other."""
        ov = import_openvino()
        config = {"INFERENCE_PRECISION_HINT": OV_HINTS[precision], "PERFORMANCE_HINT": "THROUGHPUT"}
        if threads > 0:
            config.update({"INFERENCE_NUM_THREADS": int(threads), "ENABLE_CPU_PINNING": False})
        if writable_dir(compiled_dir) is not None:  # OpenVINO raises if it cannot create the folder
            config["CACHE_DIR"] = str(compiled_dir)
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        count = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(max(count, 1))]
        self.precision = precision
        self.preprocess = preprocess
        self._lock = threading.Lock()  # trunks are cached per process and may be shared by threads

    def embed(self, batch: Tensor, *, streams: int | None = None) -> Tensor:
        """(N, 3, S, S) uint8 in network channel order → (N, D) float32. The batch is split over
        `streams` of the compiled model's streams (one thread each; None: all of them), so the CNN
        can leave a core to a producer that is working beside it."""
        x = self.preprocess.normalise(batch).numpy()
        count = len(self.requests) if streams is None else max(1, min(int(streams), len(self.requests)))
        parts = np.array_split(x, min(count, len(x)))
        outputs = []
        with self._lock:
            for request, part in zip(self.requests, parts):
                request.start_async({0: part})
            for request, _ in zip(self.requests, parts):
                request.wait()
                outputs.append(request.get_output_tensor(0).data.copy())
        return torch.from_numpy(np.concatenate(outputs))
