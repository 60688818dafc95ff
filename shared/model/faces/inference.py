"""Batched RetinaFace detection on CPU or CUDA at a bounded resolution, boxes in frame coordinates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.model.faces.openvino_net import OpenVINORetinaFace
from shared.model.faces.priors import prior_boxes, select_decoded
from shared.model.faces.retinaface import RetinaFace
from shared.model.types import Detection
from shared.model.weights_registry import Normalisation


def detection_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The (height, width) frames are detected at: longest side at most `max_side`, never enlarged."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 frames at `size` (height, width): OpenCV's area filter on uint8, as is when
    they already have that size."""
    import cv2

    height, width = size
    if frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


class RetinaFaceDetector:
    """Runs a loaded RetinaFace on batches of RGB uint8 frames."""

    def __init__(
        self,
        net: RetinaFace | OpenVINORetinaFace,
        *,
        normalisation: Normalisation,
        device: str | torch.device = "cpu",
        max_side: int = 640,
        score_threshold: float = 0.6,
        iou_threshold: float = 0.4,
        batch_size: int = 16,
        backend: str = "torch",
        ir_path: Path | None = None,
        threads: int = 0,
        half: bool = True,
    ) -> None:
        """`net` is the torch network, or an already built OpenVINO one (e.g. read from ONNX).
        `backend` "openvino" (CPU only) compiles the torch network with OpenVINO, "torch" runs it
        as it is; `ir_path` caches OpenVINO's form of the network there; `threads` caps its threads."""
        self.device = torch.device(device)
        if isinstance(net, OpenVINORetinaFace):
            backend = "openvino"
        if backend not in ("torch", "openvino"):
            raise ValueError(f"unknown RetinaFace backend {backend!r}; expected torch or openvino")
        if backend == "openvino" and self.device.type != "cpu":
            raise ValueError("the OpenVINO RetinaFace backend runs on the CPU only")
        self.backend = backend
        if isinstance(net, OpenVINORetinaFace):
            self.net, self._forward = None, net
        else:
            self.net = net.to(self.device).eval()
            if self.device.type == "cuda":
                self.net = self.net.to(memory_format=torch.channels_last)
            self._forward = self.net
            if backend == "openvino":
                self._forward = OpenVINORetinaFace(self.net, ir_path=ir_path, normalisation=normalisation,
                                                   threads=threads)
        # The published ONNX export ends in a softmax; the torch network returns logits.
        self._probabilities = bool(getattr(self._forward, "outputs_probabilities", False))
        # OpenVINO networks built with the normalisation take resized uint8 frames as they are.
        self._uint8_input = bool(getattr(self._forward, "takes_uint8_frames", False))
        self.name = f"retinaface-{net.backbone}"
        # On CUDA the torch network runs in fp16 autocast (boxes checked against fp32 in
        # tests/shared/model/faces/test_device_frames.py); `half=False` keeps it in fp32.
        self._half = self.device.type == "cuda" and self.net is not None and half
        self.precision = "fp16" if self._half else getattr(self._forward, "precision", "fp32")
        self.normalisation = normalisation
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.batch_size = batch_size
        self._mean = torch.tensor(normalisation.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(normalisation.std, device=self.device).view(1, 3, 1, 1)

    def detect(self, frames: np.ndarray | torch.Tensor) -> list[list[Detection]]:
        """Faces per frame; boxes are (x1, y1, x2, y2) in the frames' pixels. `frames` is (N, H, W, 3)
        uint8 RGB, or a (N, 3, H, W) uint8 RGB tensor where it was decoded (frames decoded on the GPU
        are resized and normalised there)."""
        if isinstance(frames, torch.Tensor):
            if frames.ndim != 4 or frames.shape[1] != 3:
                raise ValueError(f"frame tensors must be (N, 3, H, W), got {tuple(frames.shape)}")
            if self._uint8_input or frames.device != self.device:
                frames = frames.permute(0, 2, 3, 1).cpu().numpy()  # this network takes host frames
        else:
            frames = np.asarray(frames)
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
        results: list[list[Detection]] = []
        for start in range(0, frames.shape[0], self.batch_size):
            results.extend(self._detect_chunk(frames[start : start + self.batch_size]))
        return results

    @torch.inference_mode()
    def _detect_chunk(self, frames: np.ndarray | torch.Tensor) -> list[list[Detection]]:
        on_device = isinstance(frames, torch.Tensor)
        height, width = frames.shape[2:4] if on_device else frames.shape[1:3]
        size = detection_size(height, width, self.max_side)
        if on_device:
            batch = self._normalised(frames.float(), size)
        else:
            batch = _resized(frames, size) if self._uint8_input else self._prepare(frames, size)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self._half):
            loc, classes, landmark_offsets = self._forward(batch)
        priors = prior_boxes(*size, device=self.device)
        if priors.shape[0] != loc.shape[1]:
            raise RuntimeError(f"{priors.shape[0]} priors for {loc.shape[1]} predictions at input {size}")
        scores = (classes.float() if self._probabilities else classes.float().softmax(dim=-1))[..., 1]
        selected = select_decoded(loc.float(), scores, landmark_offsets.float(), priors, size=size,
                                  score_threshold=self.score_threshold, iou_threshold=self.iou_threshold)
        factors = (width / size[1], height / size[0])
        return [self._to_detections(b, s, lm, factors=factors, frame_size=(height, width)) for b, s, lm in selected]

    def _prepare(self, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        if self.device.type == "cpu":
            return self._prepare_cpu(frames, size)
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device, non_blocking=True)
        return self._normalised(pixels.permute(0, 3, 1, 2).float(), size)

    def _normalised(self, batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, 3, H, W) float RGB pixels on the network's device → its input at `size` (antialiased
        bilinear resize, channel order, (x·scale − mean) / std, channels_last on CUDA)."""
        if tuple(batch.shape[-2:]) != size:
            batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
        if self.normalisation.channels == "BGR":
            batch = batch.flip(1)
        batch = (batch * self.normalisation.scale - self._mean) / self._std
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _prepare_cpu(self, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """The CPU path for torch: OpenCV's area resize on uint8, then OpenCV's blob maker for channel
        order, (x·scale − mean) and the NCHW layout in one pass (against 6.7 ms per 640×360 frame for
        the same arithmetic in torch on permuted pixels)."""
        import cv2

        height, width = size
        frames = _resized(frames, size)
        norm = self.normalisation
        # blobFromImages computes (x − m)·s with m in the output channel order: m = mean / scale.
        mean = tuple(float(m) / norm.scale for m in norm.mean)
        blob = cv2.dnn.blobFromImages(list(frames), norm.scale, (width, height), mean,
                                      swapRB=norm.channels == "BGR", crop=False)
        batch = torch.from_numpy(blob)
        if any(s != 1.0 for s in norm.std):
            batch /= self._std
        return batch

    @staticmethod
    def _to_detections(
        boxes: torch.Tensor,
        scores: torch.Tensor,
        landmarks: torch.Tensor | None,
        *,
        factors: tuple[float, float],
        frame_size: tuple[int, int],
    ) -> list[Detection]:
        sx, sy = factors
        height, width = frame_size
        box_np = (boxes.cpu().numpy() * np.array([sx, sy, sx, sy], dtype=np.float32)).astype(np.float32)
        box_np[:, [0, 2]] = box_np[:, [0, 2]].clip(0, width)
        box_np[:, [1, 3]] = box_np[:, [1, 3]].clip(0, height)
        lm_np = None if landmarks is None else landmarks.cpu().numpy() * np.array([sx, sy], dtype=np.float32)
        out = []
        for i, score in enumerate(scores.cpu().tolist()):
            if box_np[i, 2] <= box_np[i, 0] or box_np[i, 3] <= box_np[i, 1]:
                continue
            out.append(Detection(box=box_np[i], score=float(score),
                                 landmarks=None if lm_np is None else lm_np[i].astype(np.float32)))
        return out
