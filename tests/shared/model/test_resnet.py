"""The own ResNet-50 / ResNeXt-50 trunks against torchvision's (the reference the checkpoints were saved from)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

from shared.model.resnet import resnet_layers, resnext50_32x4d_trunk

STEM_AND_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _reference_trunk(model: nn.Module) -> nn.Sequential:
    return nn.Sequential(*(getattr(model, name) for name in STEM_AND_STAGES))


def _randomise_batchnorm(module: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial statistics, so a mixed-up layer would show in the output."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)


@pytest.mark.parametrize(("name", "ours"), [
    ("resnext50_32x4d", lambda: resnext50_32x4d_trunk()),
    ("resnet50", lambda: nn.Sequential(*resnet_layers().values())),
])
def test_same_parameter_names_shapes_and_outputs_as_torchvision(name, ours):
    torch.manual_seed(0)
    reference = _reference_trunk(getattr(torchvision.models, name)(weights=None)).eval()
    _randomise_batchnorm(reference, seed=1)
    mine = ours().eval()
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in mine.state_dict().items()} == expected
    mine.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.allclose(mine(x), reference(x), atol=1e-5, rtol=1e-4)


def test_loading_a_checkpoint_for_analysis_does_not_import_torchvision(tmp_path):
    from tests.checkpoints import write_seed_checkpoint

    path = write_seed_checkpoint(tmp_path, sequence_length=4)
    code = (
        "import sys\n"
        "from shared.model.checkpoints import load_model\n"
        "from shared.model.faces.retinaface import RetinaFace\n"
        f"load_model({str(path)!r})\n"
        "assert 'torchvision' not in sys.modules, 'torchvision was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[3]))
