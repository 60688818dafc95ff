"""Analysis options: the settings a user may choose per analysis (CLI flags, API form fields).

Torch-free on purpose so the web app validates a job's parameters before enqueueing it.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from shared.errors import InvalidOptionsError, WeightsNotFoundError

FACE_DETECTORS = ("auto", "retinaface", "opencv", "none")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
AGGREGATIONS = ("mean", "median", "max", "top_quartile")
# Each option's allowed values, declared once: validation below, the API schema (web/schemas.py) and the
# CLI's flags are derived from these. Integer options: inclusive (low, high).
INT_RANGES: dict[str, tuple[int, int]] = {
    "sequence_length": (1, 1000),
    "window_stride": (1, 1000),
    "frame_stride": (1, 1000),
    "detect_every": (1, 1000),
    "full_detect_every": (1, 1000),
    "batch_size": (1, 1024),
    "detect_max_side": (64, 4096),
    "min_track_frames": (1, 100000),
    "heatmaps": (0, 20),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "face_detector": FACE_DETECTORS,
    "device": DEVICES,
    "precision": PRECISIONS,
    "aggregation": AGGREGATIONS,
}
# Number options: from 0 to this upper bound, inclusive.
FRACTION_UPPER: dict[str, float] = {"threshold": 1.0, "uncertain_band": 0.5, "crop_margin": 2.0, "min_face_score": 1.0}
# The settings a client of the service may choose per job (device, batch size and the like are the
# operator's): the API's upload fields and `deepfake submit`'s flags.
CLIENT_OPTIONS = ("sequence_length", "window_stride", "frame_stride", "detect_every", "full_detect_every",
                  "face_detector", "precision", "weights")
# What each client option does, one line each, in one place: the upload and batch pages show it beside the
# field, and the API document is each field's `description` (web/schemas.py). Ranges and defaults are
# not repeated here: they come from INT_RANGES, CHOICES and AnalysisOptions' defaults.
OPTION_HELP: dict[str, str] = {
    "weights": "The trained model (checkpoint file in the server's weights folder) that scores the faces; "
               "default: the server's default checkpoint.",
    "sequence_length": "Frames the model judges together as one window; default: the checkpoint's own length "
                       "(the frames in its name). Longer is steadier but needs longer face tracks.",
    "window_stride": "Frames from one window's start to the next; smaller overlaps more and costs more; "
                     "default: half a window.",
    "frame_stride": "Analyse every N-th frame: 1 analyses them all; 2 halves the work and sees half as much.",
    "detect_every": "Look for faces every K-th analysed frame and follow them in between; "
                    "lower finds faces sooner and costs more.",
    "full_detect_every": "OpenCV detector only: search the whole frame every N-th look, only near known faces "
                         "between; 1 searches the whole frame every time.",
    "face_detector": "auto: RetinaFace when the server has its weights, else OpenCV's Haar (misses profile "
                     "and small faces); none: the video is already cropped to one face.",
    "precision": "Number format of the network: auto picks the fastest that agrees with fp32 on the worker; "
                 "fp32 is the reference.",
}
CHECKPOINT_SUFFIXES = (".pt", ".pth")
# Face-detector weights share WEIGHTS_DIR (weights/README.md): RetinaFace files are never a model to choose.
_DETECTOR_FILE = re.compile(r"^(retinaface|detection_)|_final\.pth$", re.IGNORECASE)
_DETECTOR_SUFFIXES = (".pth", ".onnx", ".zip")
WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
# Form fields are read as plain ASCII decimals, with an optional sign and (for floats) a fraction.
_ASCII_INT = re.compile(r"[+-]?[0-9]{1,9}", re.ASCII)
_ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})", re.ASCII)


@dataclass(frozen=True)
class AnalysisOptions:
    """Every engine setting of one analysis; `None` means "the checkpoint's own value".

    `weights` is a checkpoint file name inside WEIGHTS_DIR (the CLI may also pass a path).
    """

    weights: str | None = None
    sequence_length: int | None = None
    window_stride: int | None = None
    frame_stride: int = 1
    detect_every: int = 5
    full_detect_every: int = 6
    face_detector: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 32
    threshold: float | None = None
    aggregation: str = "mean"
    uncertain_band: float = 0.05
    crop_margin: float = 0.0
    detect_max_side: int = 640
    min_track_frames: int = 8
    min_face_score: float = 0.5
    heatmaps: int = 3
    # A small seekable MP4 for the job page (shared.model.preview), made where the caller gives it a folder.
    preview: bool = True

    def __post_init__(self) -> None:
        for name, (low, high) in INT_RANGES.items():
            _check_range(name, getattr(self, name), low, high, optional=_DEFAULTS[name] is None)
        for name, choices in CHOICES.items():
            _check_choice(name, getattr(self, name), choices)
        for name, upper in FRACTION_UPPER.items():
            _check_fraction(name, getattr(self, name), optional=_DEFAULTS[name] is None, upper=upper)
        if not isinstance(self.preview, bool):
            raise InvalidOptionsError(f"preview must be true or false, got {self.preview!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, allow_paths: bool = False) -> "AnalysisOptions":
        """Build from strings or JSON values (form fields, job parameters); unknown keys are an error.

        `allow_paths=False` (the web) accepts only a plain file name for `weights`.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidOptionsError(f"unknown option(s): {', '.join(unknown)}; known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name, raw in data.items():
            if raw is None or raw == "":
                continue
            values[name] = _coerce(name, raw, option_type(name))
        weights = values.get("weights")
        if weights is not None and not allow_paths and not WEIGHTS_NAME.match(weights):
            raise InvalidOptionsError("weights must be a checkpoint file name in the weights directory, not a path")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_DEFAULTS = {option.name: option.default for option in fields(AnalysisOptions)}


def option_type(name: str) -> type:
    """The Python type of option `name`'s values (int, float, str or bool)."""
    if name in INT_RANGES:
        return int
    if name in FRACTION_UPPER:
        return float
    return bool if name == "preview" else str


def _coerce(name: str, raw: Any, kind: type) -> Any:
    if kind is str:
        return str(raw).strip()
    if kind is bool:
        return _parse_flag(name, raw)
    if isinstance(raw, bool):
        raise InvalidOptionsError(f"{name} must be a number, got {raw!r}")
    try:
        if isinstance(raw, str):
            return _parse_decimal(raw.strip(), kind)
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        return float(raw)
    except (TypeError, ValueError, OverflowError):
        raise InvalidOptionsError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


_FLAG_WORDS = {"true": True, "1": True, "on": True, "yes": True, "false": False, "0": False, "off": False, "no": False}


def _parse_flag(name: str, raw: Any) -> bool:
    """A JSON boolean, or a form field's true/false, 1/0, on/off, yes/no."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower() if isinstance(raw, (str, int)) else None
    if word not in _FLAG_WORDS:
        raise InvalidOptionsError(f"{name} must be true or false, got {raw!r}")
    return _FLAG_WORDS[word]


def _parse_decimal(text: str, kind: type) -> int | float:
    """ASCII decimal only: int() and float() would also take `1_0`, Unicode digits, `inf` and `nan`."""
    pattern = _ASCII_INT if kind is int else _ASCII_NUMBER
    if not pattern.fullmatch(text):
        raise ValueError(text)
    return int(text) if kind is int else float(text)


def _check_range(name: str, value: int | None, low: int, high: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidOptionsError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidOptionsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_fraction(name: str, value: float | None, *, optional: bool = False, upper: float = 1.0) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= upper:
        raise InvalidOptionsError(f"{name} must be a number from 0 to {upper}, got {value!r}")


def installed_checkpoints(weights_dir: Path) -> list[str] | None:
    """The checkpoint file names a job may choose in `weights_dir` (face-detector weights left out), sorted;
    None when this host has no such folder (a web machine without the workers' files)."""
    folder = Path(weights_dir)
    if not folder.is_dir():
        return None
    return sorted(path.name for path in folder.iterdir() if path.suffix in CHECKPOINT_SUFFIXES
                  and path.is_file() and not _DETECTOR_FILE.search(path.name))


def installed_detector_files(weights_dir: Path) -> list[str]:
    """The RetinaFace weight files in `weights_dir`, sorted: `face_detector=auto` uses RetinaFace when there is
    one, else OpenCV's Haar fallback. By name only, so the web can report it without the engine."""
    folder = Path(weights_dir)
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir()
                  if path.suffix in _DETECTOR_SUFFIXES and _DETECTOR_FILE.search(path.name) and path.is_file())


def named_checkpoint(weights_dir: Path, name: str) -> Path:
    """The checkpoint a bare `weights` name means: `weights_dir/<name>` or `<name>.pt`, with a checkpoint suffix.

    Here, torch-free, so the web can check a name before queueing with the worker's own rule. Nothing
    outside `weights_dir` is looked at, and "absent" and "not a checkpoint file" read the same, with no path.
    """
    for candidate in (name, f"{name}.pt"):
        path = Path(weights_dir) / candidate
        if path.suffix in CHECKPOINT_SUFFIXES and path.parent == Path(weights_dir) and path.is_file():
            return path
    raise WeightsNotFoundError(f"no checkpoint named {name!r} in the weights directory (WEIGHTS_DIR)")
