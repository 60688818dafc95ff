"""RetinaFace networks (ResNet50 and MobileNet0.25 backbones) and their checkpoint loading.

Module names follow the public checkpoints' state-dict layout (`body.*`, `fpn.*`, `ssh1.*`-`ssh3.*`,
`ClassHead.i.conv1x1.*`, `BboxHead.*`, `LandmarkHead.*`) so both families load without renaming.
This file does no I/O beyond turning an already-read state dict into a network.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import CheckpointMismatchError

BACKBONES = ("mobilenet0.25", "resnet50")
ANCHORS_PER_CELL = 2
_STRIP_PREFIXES = ("module.",)


def _conv_bn(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1, slope: float | None = 0.0) -> nn.Sequential:
    """Conv (no bias) + BatchNorm, then LeakyReLU unless `slope` is None (indices 0, 1, 2 as in the checkpoints)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if slope is not None:
        layers.append(nn.LeakyReLU(negative_slope=slope, inplace=True))
    return nn.Sequential(*layers)


def _depthwise_separable(c_in: int, c_out: int, stride: int, slope: float = 0.1) -> nn.Sequential:
    """Depthwise 3×3 + BN + act, pointwise 1×1 + BN + act (indices 0..5)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.LeakyReLU(negative_slope=slope, inplace=True),
        nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(negative_slope=slope, inplace=True),
    )


class MobileNetBody(nn.Module):
    """MobileNet-V1 at width 0.25, cut into three stages with strides 8, 16, 32 (64, 128, 256 channels)."""

    out_channels = (64, 128, 256)

    def __init__(self) -> None:
        super().__init__()
        dw = _depthwise_separable
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, stride=2, slope=0.1),
            dw(8, 16, 1), dw(16, 32, 2), dw(32, 32, 1), dw(32, 64, 2), dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(dw(64, 128, 2), *(dw(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(dw(128, 256, 2), dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return [c3, c4, self.stage3(c4)]


class ResNet50Body(nn.Module):
    """ResNet-50's stem and layer1..4 under their usual names; returns layer2..layer4's outputs."""

    out_channels = (512, 1024, 2048)

    def __init__(self) -> None:
        super().__init__()
        from shared.model.resnet import resnet_layers

        for name, module in resnet_layers().items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


class FPN(nn.Module):
    """Three 1×1 laterals, top-down nearest upsampling, 3×3 merge convs on the two finer levels."""

    def __init__(self, in_channels: tuple[int, int, int], width: int) -> None:
        super().__init__()
        slope = 0.1 if width <= 64 else 0.0
        self.output1 = _conv_bn(in_channels[0], width, kernel=1, slope=slope)
        self.output2 = _conv_bn(in_channels[1], width, kernel=1, slope=slope)
        self.output3 = _conv_bn(in_channels[2], width, kernel=1, slope=slope)
        self.merge1 = _conv_bn(width, width, slope=slope)
        self.merge2 = _conv_bn(width, width, slope=slope)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class SSH(nn.Module):
    """Context module: 3×3, 5×5 and 7×7 receptive branches from stacked 3×3 convs, concatenated."""

    def __init__(self, width: int) -> None:
        super().__init__()
        slope = 0.1 if width <= 64 else 0.0
        quarter = width // 4
        self.conv3X3 = _conv_bn(width, width // 2, slope=None)
        self.conv5X5_1 = _conv_bn(width, quarter, slope=slope)
        self.conv5X5_2 = _conv_bn(quarter, quarter, slope=None)
        self.conv7X7_2 = _conv_bn(quarter, quarter, slope=slope)
        self.conv7x7_3 = _conv_bn(quarter, quarter, slope=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.conv5X5_1(x)
        branch7 = self.conv7x7_3(self.conv7X7_2(mid))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(mid), branch7], dim=1))


class _Head(nn.Module):
    """A 1×1 conv giving `values` numbers per anchor, flattened to (N, H·W·anchors, values)."""

    def __init__(self, width: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(width, ANCHORS_PER_CELL * values, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


def _heads(width: int, values: int) -> nn.ModuleList:
    return nn.ModuleList(_Head(width, values) for _ in range(3))


class RetinaFace(nn.Module):
    """RetinaFace; forward returns raw (box offsets, class logits, landmark offsets) over all priors."""

    def __init__(self, backbone: str = "mobilenet0.25") -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r}; known: {', '.join(BACKBONES)}")
        self.backbone = backbone
        self.body = MobileNetBody() if backbone == "mobilenet0.25" else ResNet50Body()
        width = 64 if backbone == "mobilenet0.25" else 256
        self.fpn = FPN(self.body.out_channels, width)
        self.ssh1, self.ssh2, self.ssh3 = SSH(width), SSH(width), SSH(width)
        self.ClassHead = _heads(width, 2)
        self.BboxHead = _heads(width, 4)
        self.LandmarkHead = _heads(width, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(self.body(x))
        feats = [self.ssh1(levels[0]), self.ssh2(levels[1]), self.ssh3(levels[2])]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, feats)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, feats)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, logits, landmarks


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a DataParallel `module.` prefix from every key that has one."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def guess_backbone(state: Mapping[str, torch.Tensor]) -> str:
    """Which backbone a (prefix-stripped) state dict belongs to, from its key layout."""
    if any(k.startswith("body.stage1.") for k in state):
        return "mobilenet0.25"
    if any(k.startswith("body.layer4.") for k in state):
        return "resnet50"
    raise CheckpointMismatchError(
        "not a RetinaFace checkpoint: no body.stage1.* (MobileNet0.25) or body.layer4.* (ResNet50) keys"
    )


def load_state(net: RetinaFace, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> RetinaFace:
    """Load a state dict of either family into `net`; CheckpointMismatchError names what does not fit."""
    state = strip_prefixes(state)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{source} does not match RetinaFace-{net.backbone}: "
            f"missing keys {_preview(missing)}; unexpected keys {_preview(unexpected)}"
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise CheckpointMismatchError(
            f"{source} does not match RetinaFace-{net.backbone}: wrong tensor shapes for {_preview(wrong)}"
        )
    # assign=True lets a network built on the meta device (no init cost) take the tensors as they are.
    net.load_state_dict(state, strict=True, assign=True)
    return net


def _preview(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"[{shown}]{more}"
