"""Clip augmentations that matter for deepfake detection: re-compression, blur, noise, flips and
colour jitter. Parameters are drawn once per clip and applied to every frame, so the temporal
signal the LSTM learns from is not drowned in per-frame flicker.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation; `none()` turns them all off."""

    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 95)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_p: float = 0.2
    noise_sigma: tuple[float, float] = (2.0, 8.0)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(flip_p=0.0, jitter_p=0.0, jpeg_p=0.0, blur_p=0.0, noise_p=0.0)


@dataclass(frozen=True)
class ClipParams:
    """The augmentation drawn for one clip (None / False: not applied)."""

    flip: bool
    jitter: tuple[float, float, float] | None
    jpeg_quality: int | None
    blur_sigma: float | None
    noise_sigma: float | None


def draw_params(config: AugmentConfig, rng: np.random.Generator) -> ClipParams:
    """Draw one clip's augmentation parameters."""
    jitter = None
    if rng.random() < config.jitter_p:
        jitter = (
            1.0 + rng.uniform(-config.brightness, config.brightness),
            1.0 + rng.uniform(-config.contrast, config.contrast),
            1.0 + rng.uniform(-config.saturation, config.saturation),
        )
    return ClipParams(
        flip=bool(rng.random() < config.flip_p),
        jitter=jitter,
        jpeg_quality=int(rng.integers(*config.jpeg_quality, endpoint=True)) if rng.random() < config.jpeg_p else None,
        blur_sigma=float(rng.uniform(*config.blur_sigma)) if rng.random() < config.blur_p else None,
        noise_sigma=float(rng.uniform(*config.noise_sigma)) if rng.random() < config.noise_p else None,
    )


def augment_clip(clip: np.ndarray, params: ClipParams, rng: np.random.Generator) -> np.ndarray:
    """Apply `params` to every frame of an RGB uint8 clip (T, H, W, 3); returns a new array."""
    out = clip[:, :, ::-1] if params.flip else clip
    if params.jitter is not None:
        out = _colour_jitter(out, *params.jitter)
    frames = [np.ascontiguousarray(frame) for frame in out]
    if params.blur_sigma is not None:
        frames = [cv2.GaussianBlur(frame, (0, 0), params.blur_sigma) for frame in frames]
    if params.noise_sigma is not None:
        frames = [_add_noise(frame, params.noise_sigma, rng) for frame in frames]
    if params.jpeg_quality is not None:
        frames = [_jpeg(frame, params.jpeg_quality) for frame in frames]
    return np.stack(frames)


def _colour_jitter(clip: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    x = clip.astype(np.float32) * brightness
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * contrast + mean
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey[..., None]) * saturation + grey[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def _add_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, sigma, size=frame.shape).astype(np.float32)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    # cv2 codes BGR; the round trip through reversed channels keeps the clip RGB.
    ok, data = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return frame
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
