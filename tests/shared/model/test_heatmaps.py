from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from shared.model.heatmaps import cam, overlay_png, thumbnail_png
from shared.model.networks import resnext_lstm


def test_cam_matches_hand_computation() -> None:
    fmap = np.zeros((2, 2, 2), dtype=np.float32)
    fmap[0] = [[1, 0], [0, 2]]
    fmap[1] = [[0, 3], [1, 0]]
    weights = np.array([2.0, -1.0])
    # Σ w·F = [[2, -3], [-1, 4]] → minus min (−3) = [[5, 0], [2, 7]] → / 7
    np.testing.assert_allclose(cam(fmap, weights), np.array([[5, 0], [2, 7]]) / 7, rtol=1e-6)


def test_cam_of_a_network_uses_its_class_weights() -> None:
    torch.manual_seed(0)
    model = resnext_lstm(backbone="tiny", hidden_size=8).eval()
    with torch.no_grad():
        fmap = model.feature_map(torch.randn(1, 3, 64, 64))[0]
    weights = model.cam_weights()[0]
    heat = cam(fmap, weights)
    expected = (weights[:, None, None] * fmap).sum(0).numpy()
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(heat, expected, atol=1e-5)
    assert heat.shape == fmap.shape[1:] and heat.min() == 0.0 and heat.max() == pytest.approx(1.0)


def test_flat_map_and_bad_shapes() -> None:
    assert not cam(np.ones((3, 4, 4)), np.ones(3)).any()
    with pytest.raises(ValueError):
        cam(np.ones((3, 4, 4)), np.ones(2))


def test_overlay_is_a_png_of_the_requested_size_and_shows_the_heat() -> None:
    crop = np.full((112, 112, 3), 128, dtype=np.uint8)
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[0, 0] = 1.0
    image = np.asarray(Image.open(io.BytesIO(overlay_png(crop, heat, size=96))))
    assert image.shape == (96, 96, 3)
    hot, cold = image[2, 2].astype(int), image[-3, -3].astype(int)
    assert hot[0] > cold[0] and cold[2] > cold[0]  # jet: red where hot, blue where cold


def test_thumbnail() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    image = Image.open(io.BytesIO(thumbnail_png(crop, size=64)))
    assert image.format == "PNG" and image.size == (64, 64)
