"""Face crops cut where the frames already are (the GPU, when frames were decoded there).

The squares are the CPU path's own (`square_box`). Each S×S crop averages k×k bilinear samples per
output pixel, k = ceil(side / S): roi_align's adaptive sampling, written with `grid_sample` and
`avg_pool2d` so that it needs torch alone and runs as one batched op per k. When shrinking this is an
area filter, close to the antialiased bilinear resize of PIL that the CPU path (and the seed) use;
tests/shared/model/test_device_crops.py bounds the difference and holds the op to torchvision's
roi_align.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from shared.model.crops import square_box

# Frames gathered per grid_sample call: bounds the float copy (16 frames of 1080p ≈ 400 MB in fp32).
CROPS_PER_CALL = 16


def square_boxes(boxes: np.ndarray, *, margin: float, frame_w: int, frame_h: int) -> np.ndarray:
    """(M, 4) boxes → (M, 4) int64 squares inside the frame, exactly as the CPU path cuts them."""
    return np.stack([square_box(b, margin=margin, frame_w=frame_w, frame_h=frame_h) for b in boxes]) \
        if len(boxes) else np.empty((0, 4), dtype=np.int64)


def crop_faces_on_device(frames: Tensor, rows: np.ndarray, boxes: np.ndarray, *, size: int, margin: float) -> Tensor:
    """(N, 3, H, W) uint8 frames, the frame row of each of M boxes, (M, 4) boxes in frame pixels →
    (M, 3, size, size) uint8 crops on the frames' device, in the boxes' order."""
    height, width = frames.shape[-2:]
    squares = square_boxes(np.asarray(boxes, dtype=np.float64), margin=margin, frame_w=width, frame_h=height)
    rows = np.asarray(rows, dtype=np.int64)
    out = torch.empty((len(squares), 3, size, size), dtype=torch.uint8, device=frames.device)
    factors = np.maximum(1, np.ceil((squares[:, 2] - squares[:, 0]) / size)).astype(np.int64)
    for factor in np.unique(factors):
        picked = np.flatnonzero(factors == factor)
        for start in range(0, len(picked), CROPS_PER_CALL):
            chosen = picked[start : start + CROPS_PER_CALL]
            index = torch.from_numpy(chosen).to(frames.device)
            out[index] = _area_crops(frames, rows[chosen], squares[chosen], size=size, factor=int(factor))
    return out


def _area_crops(frames: Tensor, rows: np.ndarray, squares: np.ndarray, *, size: int, factor: int) -> Tensor:
    """Crops of one sampling factor: factor² bilinear samples per output pixel, averaged."""
    height, width = frames.shape[-2:]
    source = frames[torch.from_numpy(rows).to(frames.device)].float()
    grid = _sample_grid(squares, size * factor, height=height, width=width).to(frames.device)
    samples = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if factor > 1:
        samples = F.avg_pool2d(samples, factor)
    return samples.round_().clamp_(0, 255).to(torch.uint8)


def _sample_grid(squares: np.ndarray, points: int, *, height: int, width: int) -> Tensor:
    """(M, points, points, 2) sampling positions in grid_sample's [-1, 1] (align_corners=False:
    -1 and 1 are the outer edges of the border pixels): the centres of a points×points split of each square."""
    steps = (torch.arange(points, dtype=torch.float64) + 0.5) / points  # (points,) fractions of the side
    left = torch.from_numpy(squares[:, 0].astype(np.float64))[:, None]
    top = torch.from_numpy(squares[:, 1].astype(np.float64))[:, None]
    side = torch.from_numpy((squares[:, 2] - squares[:, 0]).astype(np.float64))[:, None]
    xs = (left + steps[None] * side) * (2.0 / width) - 1.0  # (M, points)
    ys = (top + steps[None] * side) * (2.0 / height) - 1.0
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
    return grid.float()


def whole_frames_on_device(frames: Tensor, *, size: int) -> Tensor:
    """(N, 3, H, W) uint8 → (N, 3, size, size) uint8, the whole frame resized (detector `none`)."""
    out = torch.empty((len(frames), 3, size, size), dtype=torch.uint8, device=frames.device)
    for start in range(0, len(frames), CROPS_PER_CALL):
        chunk = frames[start : start + CROPS_PER_CALL].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + CROPS_PER_CALL] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def to_host_crops(crops: Tensor) -> np.ndarray:
    """(M, 3, S, S) uint8 on any device → (M, S, S, 3) uint8 numpy, the CPU path's crop layout."""
    return np.ascontiguousarray(crops.permute(0, 2, 3, 1).cpu().numpy())

