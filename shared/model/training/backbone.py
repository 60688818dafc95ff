"""Starting the ResNeXt trunk from a torchvision `resnext50_32x4d` state dict (e.g. ImageNet
weights a user downloaded themselves: nothing is fetched here)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from shared.errors import CheckpointFormatError, CheckpointMismatchError, WeightsNotFoundError
from shared.model.checkpoints import load_tensors

# torchvision's child names in order; the trunk is an nn.Sequential of the first eight children.
_TORCHVISION_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def torchvision_to_trunk(state: dict) -> dict:
    """Rename `conv1.weight` → `0.weight`, `layer4.2.bn3.bias` → `7.2.bn3.bias`; drop `fc.*`."""
    index = {name: str(i) for i, name in enumerate(_TORCHVISION_CHILDREN)}
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in index:
            renamed[f"{index[head]}.{rest}"] = value
    return renamed


def load_backbone_weights(model: nn.Module, path: Path) -> int:
    """Load a torchvision resnext50_32x4d state dict into `model`'s trunk; returns tensors loaded."""
    trunk = _trunk_of(model)
    state = _read_state_dict(Path(path))
    renamed = torchvision_to_trunk(state)
    expected = trunk.state_dict()
    missing = sorted(set(expected) - set(renamed))
    wrong = [k for k in expected if k in renamed and renamed[k].shape != expected[k].shape]
    if missing or wrong:
        raise CheckpointMismatchError(
            f"{Path(path).name} is not a torchvision resnext50_32x4d state dict: "
            f"{len(missing)} missing keys ({', '.join(missing[:3])}), {len(wrong)} shape mismatches"
        )
    trunk.load_state_dict(renamed, strict=True)
    return len(renamed)


def _trunk_of(model: nn.Module) -> nn.Module:
    if getattr(model, "backbone_name", "resnext50_32x4d") != "resnext50_32x4d":
        raise CheckpointMismatchError("--backbone-weights needs the resnext50_32x4d backbone")
    for attribute in ("trunk", "model"):
        trunk = getattr(model, attribute, None)
        if isinstance(trunk, nn.Module):
            return trunk
    raise CheckpointMismatchError(f"{type(model).__name__} has no ResNeXt trunk")


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise WeightsNotFoundError(f"backbone weights {path} do not exist")
    obj = load_tensors(path, name=path.name)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError(f"{path.name} is not a state dict of tensors")
    return obj
