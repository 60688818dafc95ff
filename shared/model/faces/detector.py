"""`build_face_detector`: RetinaFace when its weights are installed, else the OpenCV fallback."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from shared.errors import InvalidOptionsError, WeightsNotFoundError
from shared.model.types import Detection, Reason
from shared.model.weights_registry import KnownWeights, detector_candidates, find_detector_weights
from shared.options import FACE_DETECTORS

FALLBACK_CODE = "fallback_face_detector"


class FaceDetector(Protocol):
    """Finds faces in batches of frames."""

    name: str

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        """(N, H, W, 3) uint8 RGB frames → per frame, detections with (x1, y1, x2, y2) boxes in frame pixels."""
        ...


def default_backbone(device: str) -> str:
    """MobileNet0.25 on CPU (ResNet50 manages ~3 frames/s there), ResNet50 on CUDA."""
    return "resnet50" if device.startswith("cuda") else "mobilenet0.25"


def build_face_detector(
    *,
    kind: str = "auto",
    device: str = "cpu",
    weights_dir: Path,
    max_side: int = 640,
    score_threshold: float = 0.6,
    backbone: str | None = None,
    registry: Sequence[KnownWeights] | None = None,
    cache_dir: Path | None = None,
    threads: int = 0,
) -> tuple[FaceDetector | None, list[Reason]]:
    """The face detector for `kind` (auto|retinaface|opencv|none) and the warnings its choice implies.

    "none" → (None, []): the caller uses the whole frame. "retinaface" without weights raises
    WeightsNotFoundError; "auto" then falls back to OpenCV's Haar cascade with a warning.
    `cache_dir` holds the OpenVINO form of torch checkpoints (default: `.openvino-cache/` beside them);
    `threads` caps the detector's threads (its share of the process's thread budget; 0: uncapped).
    """
    if kind not in FACE_DETECTORS:
        raise InvalidOptionsError(f"unknown face detector {kind!r}; choose one of {', '.join(FACE_DETECTORS)}")
    if kind == "none":
        return None, []
    if kind == "opencv":
        return _haar(max_side), []
    device = _resolve_device(device)
    found = find_retinaface_weights(Path(weights_dir), device=device, backbone=backbone, registry=registry)
    if found is not None:
        return _retinaface(found, device=device, max_side=max_side, score_threshold=score_threshold,
                           registry=registry, cache_dir=cache_dir, threads=threads), []
    if kind == "retinaface":
        raise WeightsNotFoundError(_missing_message(Path(weights_dir), device=device, backbone=backbone,
                                                    registry=registry))
    reason = Reason(
        FALLBACK_CODE,
        f"no RetinaFace weights in {weights_dir}/; used OpenCV's Haar cascade, which misses profile and "
        "small faces — run `deepfake weights fetch` to install RetinaFace",
    )
    return _haar(max_side), [reason]


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _search_order(device: str, backbone: str | None) -> list[str]:
    if backbone is not None:
        return [backbone]
    first = default_backbone(device)
    return [first, "resnet50" if first == "mobilenet0.25" else "mobilenet0.25"]


def find_retinaface_weights(weights_dir: Path, *, device: str, backbone: str | None = None,
                            registry: Sequence[KnownWeights] | None = None
                            ) -> tuple[Path, KnownWeights | None, str] | None:
    """The RetinaFace weights `build_face_detector` would load from `weights_dir` on `device`
    ((path, registry entry, backbone)), or None: the one search, shared with the workers' reports."""
    for name in _search_order(device, backbone):
        found = find_detector_weights(weights_dir, backbone=name, registry=registry)
        if found is not None:
            return found[0], found[1], name
    return None


def _missing_message(weights_dir: Path, *, device: str, backbone: str | None,
                     registry: Sequence[KnownWeights] | None) -> str:
    names = []
    for name in _search_order(device, backbone):
        names += [f for e in detector_candidates(name, registry) for f in e.filenames]
        names.append(f"retinaface-{name}*.pth")
    return (f"no RetinaFace weights in {weights_dir}/ (looked for {', '.join(names)}); "
            "run `deepfake weights fetch` to download them")


def _retinaface(found: tuple[Path, KnownWeights | None, str], *, device: str, max_side: int,
                score_threshold: float, registry: Sequence[KnownWeights] | None,
                cache_dir: Path | None, threads: int) -> FaceDetector:
    from shared.model.faces.inference import RetinaFaceDetector
    from shared.model.weights_registry import NORMALISATION

    path, entry, backbone = found
    backend = detector_backend(device)
    options = dict(device=device, max_side=max_side, score_threshold=score_threshold)
    if backend == "openvino" and path.suffix == ".onnx":
        from shared.model.faces.openvino_net import OpenVINORetinaFace

        # OpenVINO reads the published ONNX as it is: no torch network, no conversion to cache.
        norm = NORMALISATION[entry.family if entry is not None else "pytorch-retinaface"]
        net = OpenVINORetinaFace(onnx_path=path, precision=detector_precision(device), normalisation=norm,
                                 threads=threads)
        return RetinaFaceDetector(net, normalisation=norm, **options)
    from shared.model.faces.checkpoint import load_detector_weights

    loaded = load_detector_weights(path, backbone=backbone, entry=entry, registry=registry)
    ir_path = _ir_path(path, backbone, cache_dir) if backend == "openvino" else None
    return RetinaFaceDetector(loaded.net, normalisation=loaded.normalisation, backend=backend, ir_path=ir_path,
                              threads=threads, **options)


IR_VERSION = "v1"  # bump when the traced graph changes, so stale cached IRs are not read


def _ir_path(weights: Path, backbone: str, cache_dir: Path | None) -> Path:
    """Where the OpenVINO form of these detector weights is cached, keyed by content."""
    from shared.files import sha256_file

    digest = sha256_file(weights)[:16]
    folder = Path(cache_dir) if cache_dir is not None else Path(weights).parent / ".openvino-cache"
    return folder / f"{digest}-retinaface-{backbone}-{IR_VERSION}.xml"


def detector_precision(device: str) -> str:
    """bf16 where the CPU computes it natively (half the time of fp32 for MobileNet0.25 here, with the
    same faces found: tests/shared/model/faces/test_published_retinaface.py), else fp32."""
    if device != "cpu":
        return "fp32"
    from shared.model.runtime.devices import cpu_features, native_bf16

    return "bf16" if native_bf16(cpu_features()) else "fp32"


def detector_backend(device: str) -> str:
    """OpenVINO on the CPU where installed (~3× PyTorch's speed for MobileNet0.25 here), else torch."""
    from shared.model.runtime.openvino_backend import openvino_available

    return "openvino" if device == "cpu" and openvino_available() else "torch"


def _haar(max_side: int) -> FaceDetector:
    from shared.model.faces.opencv import HaarFaceDetector

    return HaarFaceDetector(max_side=max_side)
