"""The CNN runtime: device selection, CPU feature checks, and the Embedder in each backend/precision."""
from shared.model.runtime.builder import build_embedder
from shared.model.runtime.devices import cpu_features, native_bf16, native_int8, select_device
from shared.model.runtime.embedder import Embedder
from shared.options import PRECISIONS

__all__ = [
    "PRECISIONS",
    "Embedder",
    "build_embedder",
    "cpu_features",
    "native_bf16",
    "native_int8",
    "select_device",
]
