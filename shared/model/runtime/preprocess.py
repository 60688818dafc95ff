"""uint8 RGB crops → the normalised NCHW float tensor a checkpoint expects (its spec decides how)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class Preprocessor:
    """Channel order, /255, mean/std — in the same float32 operations as torchvision's
    ToTensor + Normalize, so the seed's transform chain is reproduced bit for bit."""

    def __init__(self, *, channel_order: str, mean: tuple[float, ...], std: tuple[float, ...], size: int) -> None:
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel order must be RGB or BGR, got {channel_order!r}")
        self.bgr = channel_order == "BGR"
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def to_uint8_nchw(self, crops: np.ndarray | Tensor) -> Tensor:
        """(N, S, S, 3) uint8 RGB arrays, or (N, 3, S, S) uint8 RGB tensors on any device → (N, 3, S, S)
        uint8 in the network's channel order (tensors stay on their device)."""
        if isinstance(crops, Tensor):
            if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, self.size, self.size) or crops.dtype != torch.uint8:
                raise ValueError(f"expected (N, 3, {self.size}, {self.size}) uint8 crop tensors, "
                                 f"got {tuple(crops.shape)} {crops.dtype}")
            return crops.flip(1) if self.bgr else crops
        if crops.ndim != 4 or crops.shape[1:] != (self.size, self.size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"expected (N, {self.size}, {self.size}, 3) uint8 crops, got {crops.shape} {crops.dtype}")
        if self.bgr:
            crops = crops[..., ::-1]
        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)

    def normalise(self, batch: Tensor) -> Tensor:
        """(N, 3, S, S) uint8 on any device → float32 normalised on that device."""
        x = batch.to(torch.float32).div(255)
        return x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))

    def __call__(self, crops: np.ndarray) -> Tensor:
        return self.normalise(self.to_uint8_nchw(crops))
