"""ResNet-50 and ResNeXt-50 (32×4d) trunks with the module names of the public checkpoints.

The seed's trunk and RetinaFace's ResNet50 body are these networks; their checkpoints name the
parameters as torchvision's models do (`conv1`, `bn1`, `layer1.0.conv2`, `layer2.0.downsample.0`,
…), so the modules here are laid out and named the same way and load those state dicts unchanged.
Written here rather than imported from torchvision: importing torchvision's CUDA build costs a
worker ~170 MB of resident memory for two network definitions.
"""
from __future__ import annotations

from torch import Tensor, nn

EXPANSION = 4
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (planes, blocks, stride) of layer1..4


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (grouped, strided: "v1.5") → 1×1 expand, plus the shortcut, then ReLU."""

    def __init__(self, inplanes: int, planes: int, *, stride: int, groups: int, width_per_group: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _stage(inplanes: int, planes: int, blocks: int, *, stride: int, groups: int, width_per_group: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * EXPANSION:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * EXPANSION, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * EXPANSION))
    layers = [Bottleneck(inplanes, planes, stride=stride, groups=groups, width_per_group=width_per_group,
                         downsample=downsample)]
    layers += [Bottleneck(planes * EXPANSION, planes, stride=1, groups=groups, width_per_group=width_per_group,
                          downsample=None) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet_layers(*, groups: int = 1, width_per_group: int = 64) -> dict[str, nn.Module]:
    """The stem and the four stages, by their checkpoint names, freshly initialised.

    groups=1, width_per_group=64 is ResNet-50; groups=32, width_per_group=4 is ResNeXt-50 32×4d.
    Initialisation follows the usual scheme (He-normal convs, BatchNorm γ=1 β=0) for training
    from scratch; loaded checkpoints overwrite it.
    """
    layers: dict[str, nn.Module] = {
        "conv1": nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
        "bn1": nn.BatchNorm2d(64),
        "relu": nn.ReLU(inplace=True),
        "maxpool": nn.MaxPool2d(3, stride=2, padding=1),
    }
    inplanes = 64
    for number, (planes, blocks, stride) in enumerate(STAGES, start=1):
        layers[f"layer{number}"] = _stage(inplanes, planes, blocks, stride=stride, groups=groups,
                                          width_per_group=width_per_group)
        inplanes = planes * EXPANSION
    for module in layers.values():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    return layers


def resnext50_32x4d_trunk() -> nn.Sequential:
    """conv1, bn1, relu, maxpool, layer1..4 (no pooling or classifier) as one Sequential, indexed 0..7."""
    return nn.Sequential(*resnet_layers(groups=32, width_per_group=4).values())
