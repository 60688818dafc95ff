"""RetinaFace's network compiled with OpenVINO for the CPU: ~3× PyTorch's speed here (fp32).

PyTorch's CPU depthwise convolutions are slow; MobileNet0.25 is mostly depthwise convolutions.
The network comes either from an ONNX file, which OpenVINO reads directly (the published
MobileNet0.25 weights; its class output is already softmaxed), or from the project's torch
network, traced once with a dynamic batch and frame size (~4 s; the IR is cached on disk when a
path is given). It is compiled once per detection size (a video keeps its size), with the few
most recent sizes kept, in fp32 or bf16 (`precision`).

Given the input's `normalisation`, the compiled network takes the resized frames as they are,
(N, H, W, 3) uint8 RGB: channel order, mean/std and the NCHW layout become the first operations of
the graph, where OpenVINO fuses them into the first convolution (the same arithmetic in
OpenCV's blobFromImages cost 2.9 ms per 640×360 frame here, a third of the network itself).
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from shared.model.faces.retinaface import RetinaFace
from shared.model.runtime.model_cache import cached_ir
from shared.model.runtime.openvino_loader import import_openvino
from shared.model.weights_registry import Normalisation

KEEP_SIZES = 4
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


class OpenVINORetinaFace:
    """Callable like the torch network: (N, 3, H, W) float32 → (box offsets, class logits, landmark offsets)."""

    backend = "openvino"

    def __init__(self, net: RetinaFace | None = None, *, ir_path: Path | None = None,
                 onnx_path: Path | None = None, precision: str = "fp32",
                 normalisation: Normalisation | None = None, threads: int = 0) -> None:
        """From the torch `net` (cached as IR at `ir_path`) or from `onnx_path`; exactly one of the two.
        With `normalisation`, calls take uint8 NHWC RGB frames (`takes_uint8_frames`); else float NCHW
        input already normalised. `threads` caps OpenVINO's inference threads (0: its own choice)."""
        if (net is None) == (onnx_path is None):
            raise ValueError("give either a torch RetinaFace or an ONNX file")
        if precision not in OV_PRECISION:
            raise ValueError(f"unknown RetinaFace precision {precision!r}; expected one of {', '.join(OV_PRECISION)}")
        self._core = import_openvino().Core()
        if onnx_path is not None:
            from shared.model.faces.onnx_import import read_onnx_model

            self._model = read_onnx_model(Path(onnx_path))  # refuses external data files
            self.backbone = "mobilenet0.25"
            self.outputs_probabilities = True  # the published export ends in a softmax
        else:
            self._model = cached_ir(ir_path, lambda: _convert(net))
            self.backbone = net.backbone
            self.outputs_probabilities = False
        self.precision = precision
        self.normalisation = normalisation
        self.takes_uint8_frames = normalisation is not None
        self.threads = max(0, int(threads))
        self._compiled: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._lock = threading.Lock()

    def _for_size(self, height: int, width: int):
        key = (height, width)
        with self._lock:
            if key in self._compiled:
                self._compiled.move_to_end(key)
                return self._compiled[key]
            model = self._model.clone()
            model.reshape([-1, 3, height, width])  # static frame size: measured ~20 % faster than dynamic
            if self.normalisation is not None:
                model = _with_preprocessing(model, self.normalisation)
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": OV_PRECISION[self.precision]}
            if self.threads:
                # Its share of the thread budget; unpinned, as it shares the cores with the CNN.
                config.update({"INFERENCE_NUM_THREADS": self.threads, "ENABLE_CPU_PINNING": False})
            compiled = self._core.compile_model(model, "CPU", config)
            self._compiled[key] = compiled
            while len(self._compiled) > KEEP_SIZES:
                self._compiled.popitem(last=False)
            return compiled

    def __call__(self, batch: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, H, W, 3) uint8 RGB frames when built with a normalisation, else (N, 3, H, W) float32."""
        if self.takes_uint8_frames:
            pixels = np.ascontiguousarray(batch, dtype=np.uint8)
            compiled = self._for_size(int(pixels.shape[1]), int(pixels.shape[2]))
            outputs = compiled(pixels)
            return tuple(torch.from_numpy(np.array(outputs[i])) for i in range(3))  # type: ignore[return-value]
        compiled = self._for_size(int(batch.shape[2]), int(batch.shape[3]))
        outputs = compiled(np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32))
        return tuple(torch.from_numpy(np.array(outputs[i])) for i in range(3))  # type: ignore[return-value]


def _with_preprocessing(model, norm: Normalisation):
    """`model` (float NCHW input) preceded by: uint8 NHWC RGB → float, channel order, (x·scale − mean)/std."""
    ov = import_openvino()
    ColorFormat = ov.preprocess.ColorFormat
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.RGB)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
    if norm.channels == "BGR":
        steps.convert_color(ColorFormat.BGR)
    # (x·scale − mean) / std  =  (x − mean/scale) / (std/scale)
    steps.mean([m / norm.scale for m in norm.mean]).scale([d / norm.scale for d in norm.std])
    return ppp.build()


def _convert(net: RetinaFace):
    """Trace `net` into an OpenVINO model with a dynamic batch and frame size."""
    ov = import_openvino()
    example = torch.zeros(1, 3, 320, 320)
    # Traced (~4 s here): torch.export with a dynamic frame size took ~27 s for the same graph.
    # Tracing is deprecated in favour of export; its warnings say so on every load.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit\.trace")
        return ov.convert_model(net.eval(), example_input=example, input=[-1, 3, -1, -1])
