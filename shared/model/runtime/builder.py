"""Choosing the backend and precision for an Embedder.

CUDA: PyTorch with channels_last and autocast. `auto` measures fp32, fp16 and (where the GPU has it)
bf16 on the calibration crops at load and takes the fastest within |Δp| ≤ 0.01 of fp32.
CPU: `fp32` runs the OpenVINO f32 trunk when OpenVINO is installed and its window probabilities
match plain PyTorch within 1e-5 on the calibration set (else plain PyTorch, with a warning).
`int8` is an NNCF-quantized OpenVINO trunk. `bf16` is OpenVINO bf16 where the CPU has native
bf16, else PyTorch bf16 autocast with an "emulated" warning. `auto` tries int8 then bf16, each only
where the CPU runs it natively and where |Δp| against fp32 on the calibration windows is ≤ 0.01,
and falls back to fp32. Trunks and decisions are cached in memory per checkpoint sha256.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.model.checkpoints import ModelSpec
from shared.errors import InvalidOptionsError
from shared.model.runtime import openvino_backend as ovb
from shared.model.runtime.calibration import calibration_crops, calibration_windows
from shared.model.runtime.devices import cpu_features, native_bf16, native_int8
from shared.model.runtime.embedder import Embedder, Trunk
from shared.model.runtime.model_cache import COMPILED_SUBDIR, cached_ir, mark_used, write_text_atomically
from shared.model.runtime.preprocess import Preprocessor
from shared.model.runtime.torch_backend import TorchTrunk
from shared.model.types import Reason
from shared.options import PRECISIONS

BACKENDS = ("auto", "torch", "openvino")
FP32_TOLERANCE = 1e-5
FAST_TOLERANCE = 0.01
CACHE_VERSION = 2  # bump when conversion, calibration or quantization settings change
log = logging.getLogger(__name__)
_TRUNKS: dict[tuple, Trunk] = {}
_DELTAS: dict[tuple, float] = {}


def _preprocessor(spec: ModelSpec) -> Preprocessor:
    return Preprocessor(channel_order=spec.channel_order, mean=spec.mean, std=spec.std, size=spec.input_size)


def _cuda_trunk(model: nn.Module, spec: ModelSpec, device: torch.device, precision: str,
                batch_size: int) -> tuple[Trunk, list[Reason]]:
    """CUDA: autocast at the asked precision, channels_last always; `auto` measures (`measure_precisions`)."""
    warnings: list[Reason] = []
    if precision == "auto":
        chosen, warnings = _cuda_auto(model, spec, device, batch_size)
    else:
        chosen = {"fp32": "fp32", "bf16": "bf16", "int8": "fp16"}[precision]
    if precision == "int8":
        warnings.append(Reason("precision_unsupported", "int8 is not implemented on CUDA; using fp16 autocast"))
    if chosen == "bf16" and not torch.cuda.is_bf16_supported():
        warnings.append(Reason("precision_unsupported", "this GPU has no bf16; using fp16 autocast"))
        chosen = "fp16"
    return _torch_trunk(model, spec, device, chosen), warnings


def _torch_trunk(model: nn.Module, spec: ModelSpec, device: torch.device, precision: str) -> TorchTrunk:
    return TorchTrunk(model, device=device, precision=precision, channels_last=True, preprocess=_preprocessor(spec))


@dataclass(frozen=True)
class Measured:
    """One precision of the trunk, measured on the calibration crops of real faces."""

    precision: str
    crops_per_s: float
    delta: float  # max |Δp| of the windows against fp32 on the same device


def measure_precisions(model: nn.Module, spec: ModelSpec, device: torch.device, precisions: list[str], *,
                       batch_size: int, repeats: int = 10) -> list[Measured]:
    """fp32, then each of `precisions` (torch autocast on `device`): speed over `repeats` full batches
    after a warm-up, and |Δp| of the held-out calibration windows against fp32."""
    crops = calibration_crops(size=spec.input_size)
    batch = _preprocessor(spec).to_uint8_nchw(np.resize(crops, (batch_size, *crops.shape[1:])))
    check = _preprocessor(spec).to_uint8_nchw(crops[len(crops) // 2 :])
    reference = None
    measured = []
    for precision in ["fp32", *precisions]:
        trunk = _torch_trunk(model, spec, device, precision)
        probabilities = _window_probabilities(model, spec, trunk.embed(check), device)
        reference = probabilities if reference is None else reference
        for _ in range(2):
            trunk.embed(batch)  # warm-up: cuDNN picks its kernels for this shape
        start = time.perf_counter()
        for _ in range(repeats):
            trunk.embed(batch)  # returns CPU features: each call waits for the device
        crops_per_s = repeats * batch_size / max(time.perf_counter() - start, 1e-9)
        measured.append(Measured(precision, crops_per_s, float((probabilities - reference).abs().max())))
    return measured


def _window_probabilities(model: nn.Module, spec: ModelSpec, feats: torch.Tensor, device: torch.device) -> torch.Tensor:
    windows = calibration_windows(feats, sequence_length=spec.sequence_length)
    with torch.inference_mode():
        logits = model.classify_windows(windows.to(device, torch.float32))
    return torch.softmax(logits.float(), dim=1)[:, spec.fake_index].cpu()


def pick_precision(measured: list[Measured]) -> tuple[str, list[Reason]]:
    """The fastest precision within FAST_TOLERANCE of fp32 (measured[0]); fp32 when none is faster."""
    best = measured[0]
    notes = []
    for candidate in measured[1:]:
        if candidate.delta > FAST_TOLERANCE:
            notes.append(Reason("precision_fallback", f"{candidate.precision} differed from fp32 by |Δp| "
                                                      f"{candidate.delta:.3f} > {FAST_TOLERANCE}; not used"))
        elif candidate.crops_per_s > best.crops_per_s:
            best = candidate
    return best.precision, notes


_CUDA_CHOICES: dict[tuple, tuple[str, list[Reason]]] = {}


def _cuda_auto(model: nn.Module, spec: ModelSpec, device: torch.device, batch_size: int) -> tuple[str, list[Reason]]:
    """Measured once per checkpoint, GPU model and batch size in this process (about a second)."""
    key = (spec.sha256 or id(model), torch.cuda.get_device_name(device), batch_size)
    if key not in _CUDA_CHOICES:
        candidates = ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]
        measured = measure_precisions(model, spec, device, candidates, batch_size=batch_size)
        log.info("auto precision on %s: %s", key[1], ", ".join(
            f"{m.precision} {m.crops_per_s:.0f} crops/s |Δp| {m.delta:.4f}" for m in measured))
        _CUDA_CHOICES[key] = pick_precision(measured)
    chosen, notes = _CUDA_CHOICES[key]
    return chosen, list(notes)


@dataclass
class _CpuPlan:
    """Everything the CPU decision needs, built once per build_embedder call."""

    model: nn.Module
    spec: ModelSpec
    backend: str
    cache_dir: Path | None
    threads: int = 0  # OpenVINO inference threads (the thread budget's CNN share); 0 = its own choice
    crops: np.ndarray | None = None
    reference: torch.Tensor | None = None
    warnings: list[Reason] = field(default_factory=list)

    def key(self, what: str) -> tuple | None:
        """Cache key; None (no caching) for a model not loaded from a file."""
        return (self.spec.sha256, self.spec.input_size, what) if self.spec.sha256 else None

    def ir_path(self, precision: str) -> Path | None:
        if self.cache_dir is None or not self.spec.sha256:
            return None
        name = f"{self.spec.sha256[:16]}-{self.spec.input_size}-v{CACHE_VERSION}-{precision}.xml"
        return self.cache_dir / name

    def compiled_dir(self) -> Path | None:
        """OpenVINO's own cache of compiled models (its CACHE_DIR), keyed by OpenVINO itself."""
        return self.cache_dir / COMPILED_SUBDIR if self.cache_dir is not None else None

    def calibration(self) -> np.ndarray:
        if self.crops is None:
            self.crops = calibration_crops(size=self.spec.input_size)
        return self.crops

    def quantization_crops(self) -> np.ndarray:
        return self.calibration()[: len(self.calibration()) // 2]

    def normalised_quantization_crops(self) -> np.ndarray:
        return _preprocessor(self.spec)(self.quantization_crops()).numpy()

    def check_crops(self) -> np.ndarray:
        """Crops the quantizer never saw, so |Δp| is not measured in-sample."""
        return self.calibration()[len(self.calibration()) // 2 :]

    def fake_probabilities(self, trunk: Trunk) -> torch.Tensor:
        feats = trunk.embed(_preprocessor(self.spec).to_uint8_nchw(self.check_crops()))
        windows = calibration_windows(feats, sequence_length=self.spec.sequence_length)
        with torch.inference_mode():
            logits = self.model.classify_windows(windows.to(torch.float32))
        return torch.softmax(logits.float(), dim=1)[:, self.spec.fake_index]

    def delta(self, trunk: Trunk, precision: str) -> float:
        """max |Δp| of `trunk` against plain PyTorch fp32 on the calibration windows (cached)."""
        key = self.key(f"delta-{trunk.backend}-{precision}")
        if key in _DELTAS:
            return _DELTAS[key]
        record = self.ir_path(f"{trunk.backend}-{precision}")
        delta = _read_delta(record.with_suffix(".delta.json")) if record is not None else None
        if delta is None:
            if self.reference is None:
                self.reference = self.fake_probabilities(self.torch_trunk("fp32"))
            delta = float((self.fake_probabilities(trunk) - self.reference).abs().max())
            if record is not None:
                _write_delta(record.with_suffix(".delta.json"), delta)
        if key is not None:
            _DELTAS[key] = delta
        return delta

    def torch_trunk(self, precision: str) -> Trunk:
        cpu = torch.device("cpu")
        return TorchTrunk(self.model, device=cpu, precision=precision, channels_last=True, preprocess=_preprocessor(self.spec))

    def openvino_trunk(self, precision: str) -> Trunk:
        key = self.key(f"openvino-{precision}-threads{self.threads}")
        if key in _TRUNKS:
            return _TRUNKS[key]
        trunk = ovb.OpenVINOTrunk(self._ir(precision), precision=precision, preprocess=_preprocessor(self.spec),
                                  compiled_dir=self.compiled_dir(), threads=self.threads)
        if key is not None:
            _TRUNKS[key] = trunk
        return trunk

    def _ir(self, precision: str):
        fp32 = cached_ir(self.ir_path("fp32"), lambda: ovb.convert_trunk(self.model, input_size=self.spec.input_size))
        if precision != "int8":
            return fp32
        # the crops are made only when quantizing: ~0.3 s of a cached start
        return cached_ir(self.ir_path("int8"),
                         lambda: ovb.quantize_trunk(fp32, self.normalised_quantization_crops()))


def _read_delta(path: Path) -> float | None:
    """A |Δp| measured by an earlier run (same checkpoint sha256, size and path), if recorded."""
    try:
        delta = float(json.loads(path.read_text())["max_abs_delta_p"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    mark_used(path)
    return delta


def _write_delta(path: Path, delta: float) -> None:
    # in one piece, so a concurrent reader never takes half a record for none; unwritable: measured again next run
    write_text_atomically(path, json.dumps({"max_abs_delta_p": delta}))


def _cpu_fp32(plan: _CpuPlan) -> Trunk:
    if plan.backend == "torch" or not ovb.openvino_available():
        return plan.torch_trunk("fp32")
    trunk = plan.openvino_trunk("fp32")
    delta = plan.delta(trunk, "fp32")
    if delta <= FP32_TOLERANCE or plan.backend == "openvino":
        return trunk
    plan.warnings.append(
        Reason("precision_fallback", f"OpenVINO fp32 differed from PyTorch by |Δp| {delta:.2g}; using PyTorch fp32")
    )
    return plan.torch_trunk("fp32")


def _cpu_bf16(plan: _CpuPlan) -> Trunk:
    if native_bf16(cpu_features()) and plan.backend != "torch" and ovb.openvino_available():
        return plan.openvino_trunk("bf16")
    if not native_bf16(cpu_features()):
        plan.warnings.append(
            Reason("precision_emulated", "this CPU has no native bf16 (AVX512-BF16/AMX): bf16 is emulated and slow")
        )
    return plan.torch_trunk("bf16")


def _int8_possible(backend: str) -> str | None:
    """None if int8 can run on `backend`, else why not."""
    if backend == "torch":
        return "int8 needs the OpenVINO backend"
    if not (ovb.openvino_available() and ovb.nncf_available()):
        return "int8 needs the openvino and nncf packages"
    return None


def _cpu_int8(plan: _CpuPlan) -> Trunk:
    problem = _int8_possible(plan.backend)
    if problem is not None:
        plan.warnings.append(Reason("precision_unsupported", f"{problem}; using fp32"))
        return _cpu_fp32(plan)
    if not native_int8(cpu_features()):
        plan.warnings.append(Reason("precision_emulated", "this CPU has no int8 SIMD dot products: int8 may be slow"))
    trunk = plan.openvino_trunk("int8")
    delta = plan.delta(trunk, "int8")
    if delta > FAST_TOLERANCE:
        plan.warnings.append(Reason("precision_deviation", f"int8 differs from fp32 by |Δp| {delta:.3f} on calibration windows"))
    return trunk


def fast_cpu_candidates(features: set[str] | frozenset[str], *, backend: str) -> list[str]:
    """The faster precisions `auto` tries on a CPU with `features`, in order: int8, then bf16, each only
    where the CPU runs it natively and `backend` (with the installed packages) can run it."""
    candidates = []
    if native_int8(features) and _int8_possible(backend) is None:
        candidates.append("int8")
    if native_bf16(features) and backend != "torch" and ovb.openvino_available():
        candidates.append("bf16")
    return candidates


def _cpu_auto(plan: _CpuPlan) -> Trunk:
    for precision in fast_cpu_candidates(cpu_features(), backend=plan.backend):
        trunk = plan.openvino_trunk(precision)
        delta = plan.delta(trunk, precision)
        if delta <= FAST_TOLERANCE:
            return trunk
        plan.warnings.append(
            Reason("precision_fallback", f"{precision} differed from fp32 by |Δp| {delta:.3f} > {FAST_TOLERANCE}; not used")
        )
    return _cpu_fp32(plan)


_CPU_CHOICES = {"auto": _cpu_auto, "fp32": _cpu_fp32, "bf16": _cpu_bf16, "int8": _cpu_int8}


def _default_cache_dir(spec: ModelSpec) -> Path | None:
    return Path(spec.path).parent / ".openvino-cache" if spec.path else None


def build_embedder(
    model: nn.Module,
    spec: ModelSpec,
    *,
    device: torch.device,
    precision: str = "auto",
    batch_size: int = 32,
    backend: str = "auto",
    cache_dir: Path | None = None,
    threads: int = 0,
) -> Embedder:
    """An Embedder for `model` on `device` at `precision` (auto|fp32|bf16|int8).

    `backend` (auto|torch|openvino) restricts the CPU choice; `cache_dir` holds converted
    OpenVINO IR and OpenVINO's compiled models (the service passes `Settings.model_cache_dir`;
    default: `.openvino-cache/` beside the checkpoint; used only where writable); `threads` caps
    OpenVINO's inference threads on the CPU (0: one per core).
    """
    if precision not in PRECISIONS:
        raise InvalidOptionsError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise InvalidOptionsError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if batch_size < 1:
        raise InvalidOptionsError(f"batch size must be at least 1, got {batch_size}")
    if device.type == "cuda":
        trunk, warnings = _cuda_trunk(model, spec, device, precision, batch_size)
    else:
        plan = _CpuPlan(model=model.to("cpu").eval(), spec=spec, backend=backend,
                        cache_dir=cache_dir or _default_cache_dir(spec), threads=threads)
        trunk, warnings = _CPU_CHOICES[precision](plan), plan.warnings
    return Embedder(model=model, spec=spec, trunk=trunk, device=device, batch_size=batch_size, warnings=warnings)
