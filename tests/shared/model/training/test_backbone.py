from pathlib import Path

import pytest
import torch
import torchvision

from shared.errors import CheckpointMismatchError
from shared.model.networks import resnext_lstm
from shared.model.training.backbone import load_backbone_weights, torchvision_to_trunk


def test_torchvision_names_map_onto_the_trunk() -> None:
    renamed = torchvision_to_trunk({"conv1.weight": 1, "bn1.bias": 2, "layer4.2.bn3.bias": 3, "fc.weight": 4})
    assert renamed == {"0.weight": 1, "1.bias": 2, "7.2.bn3.bias": 3}


def test_loads_a_torchvision_resnext50_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = torchvision.models.resnext50_32x4d(weights=None).state_dict()
    path = tmp_path / "resnext50_32x4d.pth"
    torch.save(source, path)
    model = resnext_lstm(backbone="resnext50_32x4d", hidden_size=8)
    assert load_backbone_weights(model, path) == len(model.trunk.state_dict())
    assert torch.equal(model.trunk.state_dict()["7.2.conv3.weight"], source["layer4.2.conv3.weight"])
    assert torch.equal(model.trunk.state_dict()["1.running_var"], source["bn1.running_var"])


def test_refuses_the_tiny_backbone_and_foreign_state_dicts(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointMismatchError, match="resnext50_32x4d backbone"):
        load_backbone_weights(resnext_lstm(backbone="tiny", hidden_size=8), path)
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        load_backbone_weights(resnext_lstm(backbone="resnext50_32x4d", hidden_size=8), path)
