"""How many NVIDIA GPUs this machine has, read from the driver's /proc entries without loading CUDA.

Processes that fork (the Celery prefork parent, `serve`'s supervisor) must never initialise CUDA, so
they ask here instead of torch.cuda.
"""
from __future__ import annotations

from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver sees


def gpu_count() -> int:
    return len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0


def resolved_device(requested: str) -> str:
    """DEVICE as the engine resolves it (`auto`: CUDA when a GPU is there), without initialising CUDA."""
    if requested != "auto":
        return requested
    return "cuda" if gpu_count() > 0 else "cpu"
