"""Which device to run on, and what the CPU can do natively (read at run time: machines differ)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from shared.errors import DeviceUnavailableError
from shared.options import DEVICES
_CPUINFO = Path("/proc/cpuinfo")


def select_device(requested: str) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` without a usable GPU → DeviceUnavailableError."""
    if requested not in DEVICES and not requested.startswith("cuda:"):
        raise DeviceUnavailableError(f"unknown device {requested!r}; expected one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if requested == "auto" else requested)
    if requested == "auto":
        return torch.device("cpu")
    raise DeviceUnavailableError("CUDA was requested but no usable CUDA GPU/driver is available; use --device cpu")


def _cpuinfo_flags(text: str) -> set[str]:
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_features() -> set[str]:
    """The CPU's instruction-set flags (from /proc/cpuinfo) plus torch's view, e.g. 'torch:AVX2'."""
    return set(_cpu_features())


@lru_cache(maxsize=1)
def _cpu_features() -> frozenset[str]:
    try:
        flags = _cpuinfo_flags(_CPUINFO.read_text())
    except OSError:
        flags = set()
    flags.add(f"torch:{torch.backends.cpu.get_cpu_capability()}")
    return frozenset(flags)


def native_bf16(features: set[str] | frozenset[str]) -> bool:
    """bf16 matrix maths in hardware: AVX512-BF16 or AMX-BF16 (plain AVX2/AVX-512 only emulate it)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(features))


def native_int8(features: set[str] | frozenset[str]) -> bool:
    """int8 dot products in SIMD: VNNI/AMX, or AVX2's u8×s8 multiply-add (vpmaddubsw) that oneDNN uses."""
    return bool({"avx2", "avx512_vnni", "avx_vnni", "amx_int8"} & set(features))
