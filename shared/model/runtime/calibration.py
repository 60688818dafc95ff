"""A deterministic calibration set for checking (and quantizing) a faster precision at build time.

Crops of a real face photo (matplotlib's bundled `grace_hopper.jpg`) at several scales, shifts,
mirrorings and brightness levels; if that file is missing, smooth synthetic images instead. The
checkpoint's own windows are then formed over these crops and their FAKE probabilities compared.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from shared.model.crops import resize_rgb

log = logging.getLogger(__name__)
PHOTO = "grace_hopper.jpg"  # in matplotlib's sample data
CALIBRATION_CROPS = 96  # the first half quantizes, the second (held out) measures |Δp|
_FACE_BOX = (160, 110, 370, 320)  # the face in grace_hopper.jpg (512×600), x1, y1, x2, y2


def _photo() -> np.ndarray | None:
    # Found without importing matplotlib: its import creates ~/.config/matplotlib.
    spec = importlib.util.find_spec("matplotlib")
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    try:
        path = Path(folders[0]) / "mpl-data" / "sample_data" / PHOTO
        return np.asarray(Image.open(path).convert("RGB"))
    except (IndexError, OSError, ValueError) as exc:
        log.warning("no calibration photo (%s): calibrating on synthetic images, int8 may be less accurate",
                    exc if folders else "matplotlib is not installed")
        return None


def _photo_crops(photo: np.ndarray, *, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    x1, y1, x2, y2 = _FACE_BOX
    h, w = photo.shape[:2]
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        side = int((x2 - x1) * rng.uniform(0.8, 1.5))
        cx = (x1 + x2) / 2 + rng.uniform(-25, 25)
        cy = (y1 + y2) / 2 + rng.uniform(-25, 25)
        left = int(np.clip(cx - side / 2, 0, w - side))
        top = int(np.clip(cy - side / 2, 0, h - side))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))
        if i % 2:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out[i] = resize_rgb(np.asarray(crop), size=size)
    return out


def _synthetic_crops(*, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.integers(0, 256, size=(count, 6, 6, 3), dtype=np.uint8)
    return np.stack([resize_rgb(c, size=size) for c in coarse])


def calibration_crops(*, size: int, count: int = CALIBRATION_CROPS) -> np.ndarray:
    """(count, size, size, 3) uint8 RGB crops, the same on every call."""
    rng = np.random.default_rng(20240611)
    photo = _photo()
    if photo is None:
        return _synthetic_crops(count=count, size=size, rng=rng)
    return _photo_crops(photo, count=count, size=size, rng=rng)


def calibration_windows(feats: torch.Tensor, *, sequence_length: int, stride: int = 4) -> torch.Tensor:
    """(N, D) features → (W, T, D) windows of T consecutive crops (wrapping around), T ≤ N."""
    n = len(feats)
    t = min(sequence_length, n)
    index = torch.stack([(torch.arange(t) + s) % n for s in range(0, n, stride)])
    return feats[index]
