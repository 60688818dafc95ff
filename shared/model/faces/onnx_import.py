"""Pytorch_Retinaface's MobileNet0.25 ONNX export as a state dict for the own torch RetinaFace.

CUDA workers run the torch network; the only trained MobileNet0.25 weights reachable here are an ONNX
export (see weights/README.md) with every BatchNorm folded into the convolution before it and anonymous
initializer names (`onnx::Conv_723`). So the tensors are placed by the graph's structure: walking back
from the outputs `loc`, `conf`, `landmarks` through the heads, SSH modules, FPN and the backbone's conv
chain, each convolution is identified by its place in the data flow, and its weight shape, stride,
padding, dilation, groups and following activation are checked against the torch module it fills.
A folded conv's weight goes to the conv, its bias to the BatchNorm after it, made the identity.

OpenVINO (already an engine dependency) reads the file; the `onnx` package is not needed.
"""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.errors import CheckpointFormatError, CheckpointMismatchError
from shared.model.faces.retinaface import RetinaFace

BACKBONE = "mobilenet0.25"  # the only backbone published as ONNX
# The MobileNet0.25 export is 1.7 MB; a file far larger is not it, and is not read into memory.
MAX_FILE_BYTES = 32 * 1024 * 1024
# The key that names an external data file; protobuf stores strings whole, so a file using external
# data holds these bytes verbatim (and eight such bytes in weights by chance are vanishingly unlikely).
_EXTERNAL_DATA_KEY = b"location"
_CONVS = ("Convolution", "GroupConvolution")
# torch's F.interpolate(mode="nearest") as OpenVINO names it.
_NEAREST = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
_HEADS = (("ClassHead", "conf"), ("BboxHead", "loc"), ("LandmarkHead", "landmarks"))


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of `RetinaFace("mobilenet0.25")` that computes what the ONNX file at `path` computes.

    The class head holds the logits whose softmax is the export's `conf`. Raises CheckpointFormatError
    when the file is not a readable ONNX model, CheckpointMismatchError when it is not this network.
    """
    path = Path(path)
    model = read_onnx_model(path)
    with torch.device("meta"):  # shapes and hyper-parameters only
        reference = RetinaFace(BACKBONE)
    try:
        found = _GraphWalk(reference, source=path.name).run(model)
    except (CheckpointMismatchError, CheckpointFormatError):
        raise
    except (RuntimeError, IndexError, KeyError, TypeError, ValueError) as exc:  # OpenVINO on an odd graph
        message = f"{path.name} is not a RetinaFace-{BACKBONE} ONNX export: {_reason(exc)}"
        raise CheckpointMismatchError(message) from exc
    return _state_dict(reference, found, source=path.name)


def read_onnx_model(path: Path) -> Any:
    """The `openvino.Model` of a self-contained ONNX file of plausible size (untrusted input)."""
    data = _read_bytes(path)
    if _EXTERNAL_DATA_KEY in data:
        # OpenVINO follows an ONNX tensor's external-data `location` anywhere (absolute paths, `..`,
        # devices), even when given the bytes: an untrusted file could make it read any file here.
        raise CheckpointFormatError(
            f"{path.name} refers to external data files; only a self-contained ONNX file is read"
        )
    from shared.model.runtime.openvino_loader import import_openvino

    try:
        return import_openvino().Core().read_model(data)
    except Exception as exc:  # OpenVINO raises bare RuntimeErrors (and others) for foreign bytes
        raise CheckpointFormatError(f"{path.name} is not an ONNX model OpenVINO can read: {_reason(exc)}") from exc


def _read_bytes(path: Path) -> bytes:
    """The whole file, if it is a regular file of a plausible size (never a device or a pipe)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointFormatError(f"{path.name} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise CheckpointFormatError(
                f"{path.name} is {info.st_size:,} bytes, too large for a RetinaFace-{BACKBONE} ONNX file"
            )
        return path.read_bytes()
    except OSError as exc:
        raise CheckpointFormatError(f"{path.name} cannot be read: {exc}") from exc


def _reason(exc: BaseException) -> str:
    """The informative line of an error; OpenVINO's start with lines naming its C++ sources."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    told = [line for line in lines if not line.startswith("Exception from ")]
    return (told or lines or [type(exc).__name__])[-1][:300]


class _FoldedConv:
    """One ONNX Conv with bias: OpenVINO's Add(Convolution(x, W), Reshape(b))."""

    def __init__(self, node: Any, *, what: str) -> None:
        add = _expect(node, "Add", what=what)
        conv, bias = _source(add, 0), _source(add, 1)
        if conv.get_type_name() not in _CONVS:
            conv, bias = bias, conv
        self.conv = _expect(conv, *_CONVS, what=f"{what}'s convolution")
        self.weight = _constant(_source(conv, 1), what=f"{what}'s weight")
        self.bias = _constant(bias, what=f"{what}'s bias")

    def check(self, module: nn.Conv2d, *, what: str) -> None:
        """Raise unless this convolution computes what `module` does, given its tensors."""
        self.weight = _fit(self.weight, tuple(module.weight.shape), what=f"{what}.weight")
        self.bias = _fit(self.bias, (module.out_channels,), what=f"{what} bias")
        attrs = self.conv.get_attributes()
        grouped = self.conv.get_type_name() == "GroupConvolution"
        groups = self.conv.get_input_partial_shape(1).get_shape()[0] if grouped else 1
        found = (tuple(attrs["strides"]), tuple(attrs["dilations"]), tuple(attrs["pads_begin"]),
                 tuple(attrs["pads_end"]), groups)
        wanted = (module.stride, module.dilation, module.padding, module.padding, module.groups)
        if found != wanted or attrs.get("auto_pad") not in ("explicit", "notset"):
            raise CheckpointMismatchError(
                f"{what}: stride, dilation, padding, groups {found} (auto_pad {attrs.get('auto_pad')}) "
                f"where RetinaFace-{BACKBONE} has {wanted}"
            )

    def same_tensors(self, other: _FoldedConv) -> bool:
        return np.array_equal(self.weight, other.weight) and np.array_equal(self.bias, other.bias)


class _GraphWalk:
    """Walks OpenVINO's graph back from the outputs, assigning each folded convolution to a torch module."""

    def __init__(self, reference: RetinaFace, *, source: str) -> None:
        self.modules = dict(reference.named_modules())
        self.source = source
        self.found: dict[str, _FoldedConv] = {}

    def run(self, model: Any) -> dict[str, _FoldedConv]:
        """Module name → its folded convolution, for every convolution of the network."""
        names = {name for output in model.outputs for name in output.get_names()}
        missing = [name for _, name in _HEADS if name not in names]
        if missing:
            raise CheckpointMismatchError(f"{self.source} has no output(s) {missing}; outputs are {sorted(names)}")
        levels = self.heads(model)
        fpn_out = [self.ssh(f"ssh{i + 1}", node) for i, node in enumerate(levels)]
        c3, c4, c5 = self.fpn(fpn_out)
        self.body(c5, stage_outputs={"body.stage1": c3, "body.stage2": c4})
        return self.found

    def heads(self, model: Any) -> list[Any]:
        """Class, box and landmark heads; returns the three SSH outputs they read."""
        levels: list[Any] = [None, None, None]
        for head, output in _HEADS:
            node = _source(model.output(output).get_node(), 0)
            if output == "conf":  # softmax over the two class logits: the torch net returns the logits
                softmax = _expect(node, "Softmax", what="conf")
                axis = softmax.get_attributes().get("axis")
                if axis not in (2, -1):
                    raise CheckpointMismatchError(f"conf: softmax over axis {axis}, not over the classes")
                node = _source(softmax, 0)
            concat = _concat(node, axis=1, what=output)
            for level in range(3):
                what = f"{head}.{level}"
                reshape = _expect(_source(concat, level), "Reshape", what=what)
                transpose = _expect(_source(reshape, 0), "Transpose", what=what)
                order = _constant(_source(transpose, 1), what=f"{what}'s transpose", floating=False)
                if order.tolist() != [0, 2, 3, 1]:
                    raise CheckpointMismatchError(f"{what}: transposed {order.tolist()}, not NCHW → NHWC")
                feature = self.conv(_source(transpose, 0), f"{what}.conv1x1")
                if levels[level] is None:
                    levels[level] = feature
                _same_node(feature, levels[level], what=f"{what}'s input and the other heads' at level {level}")
        return levels

    def ssh(self, name: str, node: Any) -> Any:
        """One SSH module ending at `node`; returns its input (an FPN level)."""
        relu = _expect(node, "Relu", what=name)
        concat = _concat(_source(relu, 0), axis=1, what=name)
        x3 = self.conv(_source(concat, 0), f"{name}.conv3X3.0")
        x5 = self.conv(self.conv(_source(concat, 1), f"{name}.conv5X5_2.0"), f"{name}.conv5X5_1.0")
        mid7 = self.conv(self.conv(_source(concat, 2), f"{name}.conv7x7_3.0"), f"{name}.conv7X7_2.0")
        x7 = self.conv(mid7, f"{name}.conv5X5_1.0")  # the export computes conv5X5_1 twice, same tensors
        _same_node(x5, x3, what=f"{name}'s 5×5 branch input")
        _same_node(x7, x3, what=f"{name}'s 7×7 branch input")
        return x3

    def fpn(self, levels: list[Any]) -> tuple[Any, Any, Any]:
        """The FPN producing `levels` (finest first); returns the backbone's three feature maps."""
        c5 = self.conv(levels[2], "fpn.output3.0")
        c4 = self.merge(self.conv(levels[1], "fpn.merge2.0"), lateral="fpn.output2.0", coarser=levels[2])
        c3 = self.merge(self.conv(levels[0], "fpn.merge1.0"), lateral="fpn.output1.0", coarser=levels[1])
        return c3, c4, c5

    def merge(self, node: Any, *, lateral: str, coarser: Any) -> Any:
        """lateral(c) + nearest-upsampled coarser level; returns c."""
        add = _expect(node, "Add", what=f"{lateral}'s top-down sum")
        first, second = _source(add, 0), _source(add, 1)
        if first.get_type_name() == "Interpolate":
            first, second = second, first
        resize = _expect(second, "Interpolate", what=f"{lateral}'s top-down upsampling")
        attrs = resize.get_attributes()
        if any(attrs.get(key) != value for key, value in _NEAREST.items()):
            raise CheckpointMismatchError(f"{lateral}: upsampling {attrs} is not torch's nearest")
        _same_node(_source(resize, 0), coarser, what=f"{lateral}'s upsampled input")
        return self.conv(first, lateral)

    def body(self, node: Any, *, stage_outputs: dict[str, Any]) -> None:
        """The backbone's chain of convolutions, from its last stage's output back to the image."""
        convs = [name for name, m in self.modules.items() if name.startswith("body.") and isinstance(m, nn.Conv2d)]
        last_of_stage = {".".join(name.split(".")[:2]): name for name in convs}  # body.stageK.i.j → body.stageK
        for name in reversed(convs):
            for stage, output in stage_outputs.items():
                if last_of_stage[stage] == name:
                    _same_node(node, output, what=f"{stage}'s output and the FPN's input")
            node = self.conv(node, name)
        parameter = _expect(node, "Parameter", what="the backbone's input")
        shape = parameter.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            raise CheckpointMismatchError(f"the input is {shape}, not [N, 3, H, W]")

    def conv(self, node: Any, name: str) -> Any:
        """`node` must be torch module `name` (a conv, with the activation that follows it there).

        Returns the node feeding that conv.
        """
        activation = self._activation_after(name)
        if activation is not None:
            _expect(node, "PRelu", what=f"{name}'s LeakyReLU")
            slope = _constant(_source(node, 1), what=f"{name}'s LeakyReLU slope")
            if slope.size != 1 or not np.isclose(float(slope.reshape(-1)[0]), activation.negative_slope):
                raise CheckpointMismatchError(
                    f"{name}: LeakyReLU slope {slope.tolist()}, not {activation.negative_slope}"
                )
            node = _source(node, 0)
        folded = _FoldedConv(node, what=name)
        folded.check(self.modules[name], what=name)
        earlier = self.found.setdefault(name, folded)
        if not earlier.same_tensors(folded):
            raise CheckpointMismatchError(f"{name} appears twice in the graph with different tensors")
        return _source(folded.conv, 0)

    def _activation_after(self, name: str) -> nn.LeakyReLU | None:
        if self.modules[name].bias is not None:  # the heads: a bare conv with bias
            return None
        parent, index = name.rsplit(".", 1)  # conv, BatchNorm, activation are siblings 0, 1, 2 (or 3, 4, 5)
        activation = self.modules.get(f"{parent}.{int(index) + 2}")
        return activation if isinstance(activation, nn.LeakyReLU) else None


def _state_dict(reference: RetinaFace, found: dict[str, _FoldedConv], *, source: str) -> dict[str, torch.Tensor]:
    """Conv weights as found; each folded bias to the following BatchNorm, made the identity."""
    modules = dict(reference.named_modules())
    state: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        if not isinstance(module, nn.Conv2d):
            continue
        if name not in found:
            raise CheckpointMismatchError(f"{source}: no convolution found for {name}")
        folded = found[name]
        state[f"{name}.weight"] = torch.from_numpy(folded.weight)
        if module.bias is not None:
            state[f"{name}.bias"] = torch.from_numpy(folded.bias)
            continue
        parent, index = name.rsplit(".", 1)
        norm_name = f"{parent}.{int(index) + 1}"
        norm = modules[norm_name]
        channels = module.out_channels
        state[f"{norm_name}.weight"] = torch.ones(channels)
        state[f"{norm_name}.bias"] = torch.from_numpy(folded.bias)
        state[f"{norm_name}.running_mean"] = torch.zeros(channels)
        # sqrt(running_var + eps) = 1: the normalisation divides by one.
        state[f"{norm_name}.running_var"] = torch.full((channels,), 1.0 - norm.eps)
        state[f"{norm_name}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def _source(node: Any, index: int) -> Any:
    if index >= node.get_input_size():
        raise CheckpointMismatchError(
            f"{node.get_type_name()} {node.get_friendly_name()!r} has {node.get_input_size()} inputs, expected more"
        )
    return node.input(index).get_source_output().get_node()


def _expect(node: Any, *types: str, what: str) -> Any:
    if node.get_type_name() not in types:
        raise CheckpointMismatchError(
            f"{what}: expected {' or '.join(types)}, found {node.get_type_name()} {node.get_friendly_name()!r}"
        )
    return node


def _concat(node: Any, *, axis: int, what: str) -> Any:
    concat = _expect(node, "Concat", what=what)
    if concat.get_input_size() != 3 or concat.get_attributes().get("axis") != axis:
        raise CheckpointMismatchError(f"{what}: a concatenation of {concat.get_input_size()} inputs on axis "
                                      f"{concat.get_attributes().get('axis')}, expected 3 on axis {axis}")
    return concat


def _same_node(node: Any, other: Any, *, what: str) -> None:
    if node.get_instance_id() != other.get_instance_id():
        raise CheckpointMismatchError(
            f"{what} differ: {node.get_friendly_name()!r} and {other.get_friendly_name()!r}"
        )


def _constant(node: Any, *, what: str, floating: bool = True) -> np.ndarray:
    """The constant behind `node`, looking through the reshapes and conversions OpenVINO puts on weights."""
    while node.get_type_name() in ("Reshape", "Convert", "Unsqueeze", "Squeeze"):
        node = _source(node, 0)
    _expect(node, "Constant", what=what)
    data = np.array(node.get_data(), copy=True)
    if floating:
        if data.dtype.kind != "f" or not np.isfinite(data).all():
            raise CheckpointMismatchError(f"{what}: {data.dtype} values, finite floats expected")
        data = data.astype(np.float32)
    return data


def _fit(data: np.ndarray, shape: tuple[int, ...], *, what: str) -> np.ndarray:
    """`data` in torch's `shape`; OpenVINO may add unit axes (bias [1, C, 1, 1], grouped weight [G, 1, 1, k, k])."""
    if data.shape != shape and [d for d in data.shape if d != 1] != [d for d in shape if d != 1]:
        raise CheckpointMismatchError(f"{what}: shape {list(data.shape)} where RetinaFace-{BACKBONE} has {list(shape)}")
    return np.ascontiguousarray(data.reshape(shape))
