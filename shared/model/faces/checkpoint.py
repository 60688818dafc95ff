"""Reading RetinaFace checkpoint files of both public families (always `weights_only=True`).

- Pytorch_Retinaface `.pth`: a state dict whose keys carry DataParallel's `module.` prefix.
- retinaface-pytorch release `.zip`: a zip archive holding one file, itself a `torch.save`d state dict
  (torch's own `.pth` files are zip archives too; those are told apart by their `data.pkl` entry).
- Pytorch_Retinaface MobileNet0.25 exported to `.onnx` (batch norm folded): read by graph structure
  (`onnx_import`), so CUDA workers can run the published ONNX weights in the torch network.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from shared.errors import CheckpointFormatError, CheckpointMismatchError
from shared.model.checkpoints import load_tensors
from shared.model.faces import onnx_import
from shared.model.faces.retinaface import RetinaFace, guess_backbone, load_state, strip_prefixes
from shared.model.weights_registry import (
    NORMALISATION,
    KnownWeights,
    Normalisation,
    lookup,
    lookup_by_sha256,
)
from shared.files import sha256_file


@dataclass(frozen=True)
class LoadedDetectorWeights:
    """A RetinaFace network with its weights, and how its input must be prepared."""

    net: RetinaFace
    backbone: str
    family: str
    normalisation: Normalisation
    family_source: str  # how the family was decided: "registry", "sha256", "key layout", "container", "onnx"
    path: Path


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict in `path` and its container: "torch" (a plain torch file) or "zip" (a zip around one)."""
    path = Path(path)
    try:
        if _is_wrapped_zip(path):
            return _unwrap(_load_zip_member(path)), "zip"
    except (zipfile.BadZipFile, OSError) as exc:  # the zip around the state dict (load_tensors maps its own)
        raise CheckpointFormatError(f"{path.name} cannot be read as a zip archive: {exc}") from exc
    return _unwrap(load_tensors(path, name=path.name)), "torch"


def _is_wrapped_zip(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return not any(n.endswith("data.pkl") for n in names)


def _load_zip_member(path: Path) -> object:
    with zipfile.ZipFile(path) as archive:
        members = [i for i in archive.infolist() if not i.is_dir()]
        if len(members) != 1:
            raise CheckpointFormatError(f"{path.name}: expected a zip holding one state-dict file, found {len(members)}")
        data = archive.read(members[0])
    return load_tensors(data, name=f"{path.name} ({members[0].filename})")


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError("the file holds no state dict of tensors")
    return dict(obj)


def decide_family(
    path: Path,
    state: dict[str, torch.Tensor],
    *,
    container: str,
    entry: KnownWeights | None,
    registry: Sequence[KnownWeights] | None = None,
) -> tuple[str, str]:
    """(family, how it was decided): registry entry by file name, else by sha256, else by layout."""
    if entry is not None and entry.family in NORMALISATION:
        return entry.family, "registry"
    by_name = lookup(Path(path).name, registry)
    if by_name is not None and by_name.family in NORMALISATION:
        return by_name.family, "registry"
    by_hash = lookup_by_sha256(sha256_file(path), registry)
    if by_hash is not None and by_hash.family in NORMALISATION:
        return by_hash.family, "sha256"
    if container == "zip":
        return "retinaface-pytorch", "container"
    if any(k.startswith("module.") for k in state):
        return "pytorch-retinaface", "key layout"
    # Unprefixed plain state dict: the more common family re-saved without DataParallel.
    return "pytorch-retinaface", "default"


def load_detector_weights(
    path: Path,
    *,
    backbone: str | None = None,
    entry: KnownWeights | None = None,
    registry: Sequence[KnownWeights] | None = None,
) -> LoadedDetectorWeights:
    """Build the RetinaFace network a checkpoint file belongs to and load it (CPU, eval mode).

    A `.onnx` file must be the Pytorch_Retinaface MobileNet0.25 export (see `onnx_import`).
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, backbone=backbone or (entry.backbone if entry is not None else None))
    state, container = read_state_dict(path)
    stripped = strip_prefixes(state)
    actual = backbone or (entry.backbone if entry and entry.backbone else None) or guess_backbone(stripped)
    with torch.device("meta"):  # skip random initialisation: every tensor comes from the file
        skeleton = RetinaFace(actual)
    net = load_state(skeleton, stripped, source=path.name).eval()
    family, source = decide_family(path, state, container=container, entry=entry, registry=registry)
    return LoadedDetectorWeights(net=net, backbone=actual, family=family, normalisation=NORMALISATION[family],
                                 family_source=source, path=path)


def _load_onnx(path: Path, *, backbone: str | None) -> LoadedDetectorWeights:
    if backbone not in (None, onnx_import.BACKBONE):
        raise CheckpointMismatchError(
            f"{path.name}: only RetinaFace-{onnx_import.BACKBONE} is read from ONNX, not {backbone}"
        )
    state = onnx_import.state_dict_from_onnx(path)
    with torch.device("meta"):
        skeleton = RetinaFace(onnx_import.BACKBONE)
    net = load_state(skeleton, state, source=path.name).eval()
    family = "pytorch-retinaface"  # the export takes what Pytorch_Retinaface's .pth does: BGR − (104, 117, 123)
    return LoadedDetectorWeights(net=net, backbone=onnx_import.BACKBONE, family=family,
                                 normalisation=NORMALISATION[family], family_source="onnx", path=path)
