"""Class activation maps (feature map × the linear layer's class weights) and PNG renderings.

Only matplotlib's colormap lookup table is used (no pyplot, no figure): the image is composed
with numpy and encoded by PIL.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

COLORMAP = "jet"


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def cam(feature_map: np.ndarray | torch.Tensor, weights: np.ndarray | torch.Tensor) -> np.ndarray:
    """(D, h, w) feature map and (D,) class weights → (h, w) float32 map scaled to 0..1.

    `Σ_d w_d · F_d`, then min-max normalised; a flat map becomes all zeros.
    """
    fmap, w = _numpy(feature_map), _numpy(weights)
    if fmap.ndim != 3 or w.shape != (fmap.shape[0],):
        raise ValueError(f"expected a (D, h, w) map and (D,) weights, got {fmap.shape} and {w.shape}")
    heat = np.tensordot(w, fmap, axes=(0, 0))
    heat -= heat.min()
    peak = heat.max()
    return (heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _colour(heat: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[COLORMAP](heat)[..., :3] * 255).astype(np.float32)


def overlay_png(crop_rgb: np.ndarray, cam_map: np.ndarray, *, size: int = 224, alpha: float = 0.45) -> bytes:
    """The crop resized to size×size with the colour-mapped CAM (bilinear upsampled) blended over it."""
    face = np.asarray(Image.fromarray(crop_rgb).resize((size, size), Image.BILINEAR), dtype=np.float32)
    heat = Image.fromarray(np.clip(_numpy(cam_map), 0.0, 1.0), mode="F").resize((size, size), Image.BILINEAR)
    blended = (1.0 - alpha) * face + alpha * _colour(np.clip(np.asarray(heat), 0.0, 1.0))
    return _png(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def thumbnail_png(crop: np.ndarray, *, size: int = 112) -> bytes:
    """The crop as a size×size PNG."""
    return _png(np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR)))
