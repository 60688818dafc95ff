"""Finding, loading and saving classifier checkpoints.

Two formats are read, always with `torch.load(..., weights_only=True)` (checkpoints are untrusted):
- the seed's plain state dicts, named `model_<accuracy>_acc_<sequence length>_frames_<anything>.pt`;
- this project's format: `{"format": FORMAT, "version": 1, "metadata": {...}, "state_dict": {...}}`,
  whose metadata (a `ModelSpec`) drives preprocessing.
"""
from __future__ import annotations

import io
import pickle
import re
import struct
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn

from shared.files import sha256_file, write_atomically
from shared.errors import CheckpointFormatError, CheckpointMismatchError, WeightsNotFoundError
from shared.model.networks import PROJECT_KIND, SEED_KIND, build_model
from shared.options import CHECKPOINT_SUFFIXES, named_checkpoint

FORMAT = "deepfake-detector-checkpoint"
VERSION = 1
DEFAULT_CHECKPOINT = "default.pt"
SEED_DEFAULT_SEQUENCE_LENGTH = 20
SEED_NAME_PATTERN = re.compile(r"^model_(?P<acc>\d+(?:\.\d+)?)_acc_(?P<frames>\d+)_frames_.*\.pt$")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_UNREADABLE = (RuntimeError, EOFError, ValueError, LookupError, TypeError, AttributeError, struct.error,
               zipfile.BadZipFile, OSError)


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint's identity and everything needed to feed it: the weights' value object."""

    name: str
    kind: str
    sequence_length: int
    input_size: int = 112
    channel_order: str = "RGB"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    class_names: tuple[str, ...] = ("FAKE", "REAL")
    fake_index: int = 0
    threshold: float = 0.5
    backbone: str = "resnext50_32x4d"
    hidden_size: int = 2048
    sha256: str = ""
    path: str | None = None
    reported_accuracy: float | None = None
    training: dict = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict:
        """A JSON-able dict of every field."""
        data = asdict(self)
        for key in ("mean", "std", "class_names"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        """The inverse of `to_dict`; unknown keys are ignored so newer files stay readable."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std", "class_names"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def seed_spec(*, name: str, sequence_length: int, reported_accuracy: float | None) -> ModelSpec:
    """The seed's fixed preprocessing: BGR, ImageNet mean/std, 112 px, class 0 = FAKE."""
    return ModelSpec(
        name=name,
        kind=SEED_KIND,
        sequence_length=sequence_length,
        channel_order="BGR",
        hidden_size=2048,
        reported_accuracy=reported_accuracy,
    )


def parse_seed_filename(name: str | Path) -> tuple[float, int] | None:
    """(reported accuracy, sequence length) from a seed file name, or None if it does not match."""
    match = SEED_NAME_PATTERN.match(Path(name).name)
    if match is None:
        return None
    return float(match["acc"]), int(match["frames"])


# --- finding -------------------------------------------------------------------------------------


def is_project_checkpoint(path: Path) -> bool:
    """Cheaply tell our format apart without unpickling: its pickle names FORMAT."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return bool(members) and FORMAT.encode() in archive.read(members[0])
    except (OSError, zipfile.BadZipFile):
        return False


def _checkpoint_files(weights_dir: Path) -> list[Path]:
    if not weights_dir.is_dir():
        return []
    return sorted(p for p in weights_dir.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)


def _seed_files(files: list[Path]) -> list[tuple[float, int, Path]]:
    found = [(parse_seed_filename(p.name), p) for p in files]
    return [(parsed[0], parsed[1], p) for parsed, p in found if parsed is not None]


def _project_default(weights_dir: Path, files: list[Path]) -> Path | None:
    """`weights/default.pt` if present, else the most recently modified project checkpoint."""
    default = weights_dir / DEFAULT_CHECKPOINT
    if default.is_file():
        return default
    project = [p for p in files if parse_seed_filename(p.name) is None and is_project_checkpoint(p)]
    return max(project, key=lambda p: p.stat().st_mtime, default=None)


def _by_name(weights_dir: Path, name: str) -> Path:
    """A bare name is looked up only in `weights_dir`; a path (the CLI's `--weights`) is taken as given.

    The web accepts only bare names (see `AnalysisOptions.from_mapping`), so a job can never reach a
    file outside WEIGHTS_DIR, and the message names no server path. Only checkpoint suffixes count, so
    a bare name cannot be used to learn whether some other file exists there.
    """
    if _is_path(name):
        path = Path(name)
        if not path.is_file():
            raise WeightsNotFoundError(f"checkpoint file {name} does not exist")
        return path
    return named_checkpoint(weights_dir, name)


def _is_path(name: str) -> bool:
    return "/" in name or "\\" in name or name in (".", "..") or Path(name).is_absolute()


def _not_found(files: list[Path], sequence_length: int | None) -> WeightsNotFoundError:
    # Read by CLI and API users alike: say only what both can act on (the `weights` setting, which
    # both take by file name, and how a checkpoint gets installed), and name files, never a server path.
    wanted = f" with sequence length {sequence_length}" if sequence_length is not None else ""
    install = ("install one with `deepfake weights fetch NAME` on the machine that runs the analysis "
               "(`deepfake weights list` shows the known checkpoints; see weights/README.md)")
    if not files:
        return WeightsNotFoundError(f"no classifier checkpoint{wanted} in the weights directory (WEIGHTS_DIR): "
                                    f"none is installed; {install}")
    lengths = sorted({frames for _, frames, _ in _seed_files(files)})
    have = f" (seed checkpoints for sequence lengths {lengths})" if lengths else ""
    installed = ", ".join(sorted(p.name for p in files))
    return WeightsNotFoundError(f"no classifier checkpoint{wanted} in the weights directory (WEIGHTS_DIR); "
                                f"installed: {installed}{have}. Choose one of these by name with the weights "
                                f"setting, or {install}")


def find_checkpoint(weights_dir: Path, *, name: str | None = None, sequence_length: int | None = None) -> Path:
    """The checkpoint to use.

    `name` (a file name in `weights_dir`, with or without `.pt`; or, for the CLI, a path containing a
    separator) wins. With a
    `sequence_length`, the seed file of that length with the highest accuracy (the seed's rule);
    if there is none, the project default. Without one: the project default (`default.pt`, else
    the newest project checkpoint), else the seed file with the highest accuracy.
    """
    weights_dir = Path(weights_dir)
    if name:
        return _by_name(weights_dir, name)
    files = _checkpoint_files(weights_dir)
    seeds = _seed_files(files)
    if sequence_length is not None:
        matching = [(acc, p) for acc, frames, p in seeds if frames == sequence_length]
        if matching:
            return max(matching, key=lambda item: (item[0], item[1].name))[1]
    project = _project_default(weights_dir, files)
    if project is not None:
        return project
    if seeds and sequence_length is None:
        return max(seeds, key=lambda item: (item[0], item[2].name))[2]
    raise _not_found(files, sequence_length)


# --- loading -------------------------------------------------------------------------------------


def _read(path: Path) -> object:
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path.name} does not exist")
    if not _looks_like_torch_file(path):
        raise CheckpointFormatError(f"{path.name} is not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    return load_tensors(path, name=path.name)


def load_tensors(source: Path | bytes, *, name: str) -> object:
    """`torch.load` with `weights_only=True` onto the CPU: the one place this project unpickles a file.

    `source` is a file or the bytes of one (a member of a zip); `name` is how messages call it. Every
    failure is a CheckpointFormatError (`checkpoint_invalid`): anything but tensors and primitives is
    refused by the restricted unpickler, and arbitrary bytes surface as one of `_UNREADABLE`.
    """
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        return torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointFormatError(
            f"{name} is not a plain tensor checkpoint and was refused (weights_only): {first}"
        ) from exc
    except _UNREADABLE as exc:
        # The unpickler meets arbitrary bytes here: an empty stack or a bad opcode surfaces as any of these.
        raise CheckpointFormatError(f"{name} cannot be read as a PyTorch checkpoint (truncated or corrupt?): "
                                    f"{type(exc).__name__}") from exc


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (since 1.6) or, in the legacy format, a pickle (protocol 2+)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_ZIP_MAGIC))
    except OSError:
        return False
    return head.startswith(_ZIP_MAGIC) or head[:1] == _PICKLE_PROTO


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _few(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, … ({len(keys) - limit} more)" if len(keys) > limit else shown


def _check_keys(model: nn.Module, state: dict, *, what: str, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if wrong:
        shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in wrong]
        parts.append(f"{len(wrong)} shape mismatches ({_few(shapes, 3)})")
    raise CheckpointMismatchError(f"{path.name} is not a {what} state dict: " + "; ".join(parts))


def _seed_from_state(path: Path) -> ModelSpec:
    parsed = parse_seed_filename(path.name)
    if parsed is None:
        spec = seed_spec(name=path.stem, sequence_length=SEED_DEFAULT_SEQUENCE_LENGTH, reported_accuracy=None)
        note = f"file name does not follow the seed pattern; sequence length defaults to {SEED_DEFAULT_SEQUENCE_LENGTH}"
        return replace(spec, training={"origin": "seed", "note": note})
    accuracy, frames = parsed
    spec = seed_spec(name=path.stem, sequence_length=frames, reported_accuracy=accuracy)
    return replace(spec, training={"origin": "seed", "sequence_length_from": "file name"})


def _project_spec(obj: dict, path: Path) -> tuple[ModelSpec, dict]:
    if obj.get("version") != VERSION:
        raise CheckpointFormatError(f"{path.name}: unsupported checkpoint version {obj.get('version')!r} (expected {VERSION})")
    metadata, state = obj.get("metadata"), obj.get("state_dict")
    if not isinstance(metadata, dict) or not _is_state_dict(state):
        raise CheckpointFormatError(f"{path.name}: checkpoint lacks a metadata dict or a tensor state_dict")
    try:
        spec = ModelSpec.from_dict(metadata)
    except TypeError as exc:
        raise CheckpointFormatError(f"{path.name}: metadata is incomplete: {exc}") from exc
    if spec.kind not in (SEED_KIND, PROJECT_KIND):
        raise CheckpointFormatError(f"{path.name}: unknown model kind {spec.kind!r}")
    _check_metadata_values(spec, path)
    return spec, state


def _check_metadata_values(spec: ModelSpec, path: Path) -> None:
    """The numbers the network and preprocessing are built from: a file may hold anything there."""
    for name in ("sequence_length", "input_size", "hidden_size"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointFormatError(f"{path.name}: metadata {name} must be a positive integer, got {value!r}")
    if not isinstance(spec.threshold, (int, float)) or not 0.0 <= spec.threshold <= 1.0:
        raise CheckpointFormatError(f"{path.name}: metadata threshold must be a number from 0 to 1")
    if not isinstance(spec.fake_index, int) or not 0 <= spec.fake_index < len(spec.class_names):
        raise CheckpointFormatError(f"{path.name}: metadata fake_index must index class_names")
    if spec.channel_order not in ("RGB", "BGR"):
        raise CheckpointFormatError(f"{path.name}: metadata channel_order must be RGB or BGR")


def _spec_and_state(obj: object, path: Path) -> tuple[ModelSpec, dict]:
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _project_spec(obj, path)
    if _is_state_dict(obj):
        return _seed_from_state(path), obj
    raise CheckpointFormatError(
        f"{path.name} is neither a seed state dict nor a {FORMAT} file (got {type(obj).__name__})"
    )


def _build(spec: ModelSpec, path: Path) -> nn.Module:
    try:
        return build_model(spec)
    except (ValueError, TypeError) as exc:  # a value of the wrong type in the file's metadata
        raise CheckpointFormatError(f"{path.name}: {exc}") from exc


def load_model(path: Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """The network in eval mode on `device`, and its spec (with the file's sha256 and path)."""
    path = Path(path)
    spec, state = _spec_and_state(_read(path), path)
    model = _build(spec, path)
    what = "seed ResNeXt-LSTM" if spec.kind == SEED_KIND else f"{spec.kind} ({spec.backbone})"
    _check_keys(model, state, what=what, path=path)
    model.load_state_dict(state, strict=True)
    spec = replace(spec, sha256=sha256_file(path), path=str(path))
    return model.to(device).eval(), spec


def save_checkpoint(model: nn.Module, spec: ModelSpec, path: Path) -> Path:
    """Write `model` in this project's format, atomically (temp file + rename in the same folder)."""
    path = Path(path)
    metadata = replace(spec, sha256="", path=None).to_dict()
    payload = {"format": FORMAT, "version": VERSION, "metadata": metadata, "state_dict": model.state_dict()}
    write_atomically(path, lambda tmp: torch.save(payload, tmp))
    return path
