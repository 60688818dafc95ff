import numpy as np

from shared.model.training.augment import AugmentConfig, ClipParams, augment_clip, draw_params
from tests.media import face_photo


def _still_clip(frames: int = 5) -> np.ndarray:
    face = np.ascontiguousarray(face_photo("astronaut")[60:172, 170:282])
    return np.repeat(face[None], frames, axis=0)


def test_one_draw_applies_the_same_way_to_every_frame() -> None:
    clip = _still_clip()
    params = ClipParams(flip=True, jitter=(1.15, 0.85, 1.2), jpeg_quality=40, blur_sigma=1.0, noise_sigma=None)
    out = augment_clip(clip, params, np.random.default_rng(0))
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert all(np.array_equal(out[0], frame) for frame in out[1:])
    assert np.abs(out[0].astype(int) - clip[0].astype(int)).mean() > 5  # it did change the pixels


def test_flip_mirrors_horizontally() -> None:
    clip = _still_clip(2)
    params = ClipParams(flip=True, jitter=None, jpeg_quality=None, blur_sigma=None, noise_sigma=None)
    assert np.array_equal(augment_clip(clip, params, np.random.default_rng(0)), clip[:, :, ::-1])


def test_noise_has_the_drawn_strength() -> None:
    clip = np.full((4, 64, 64, 3), 128, dtype=np.uint8)
    params = ClipParams(flip=False, jitter=None, jpeg_quality=None, blur_sigma=None, noise_sigma=6.0)
    out = augment_clip(clip, params, np.random.default_rng(0)).astype(float)
    assert abs(out.std() - 6.0) < 0.3


def test_jpeg_recompression_loses_detail() -> None:
    clip = _still_clip(1)
    low = ClipParams(flip=False, jitter=None, jpeg_quality=10, blur_sigma=None, noise_sigma=None)
    high = ClipParams(flip=False, jitter=None, jpeg_quality=95, blur_sigma=None, noise_sigma=None)
    error = lambda p: np.abs(augment_clip(clip, p, np.random.default_rng(0)).astype(int) - clip).mean()
    assert error(low) > 2 * error(high) > 0


def test_draws_follow_the_probabilities() -> None:
    rng = np.random.default_rng(3)
    draws = [draw_params(AugmentConfig(), rng) for _ in range(400)]
    assert 0.4 < np.mean([d.flip for d in draws]) < 0.6
    assert 0.4 < np.mean([d.jpeg_quality is not None for d in draws]) < 0.6
    assert all(40 <= d.jpeg_quality <= 95 for d in draws if d.jpeg_quality is not None)
    none = [draw_params(AugmentConfig.none(), rng) for _ in range(20)]
    assert not any(d.flip or d.jitter or d.jpeg_quality or d.blur_sigma or d.noise_sigma for d in none)
