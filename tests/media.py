"""Test media made on the fly: real face photos, animated, encoded with ffmpeg.

No file is downloaded: the faces are scikit-image's `astronaut()` and matplotlib's bundled
`grace_hopper.jpg`.
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image


@lru_cache(maxsize=None)
def face_photo(name: str = "astronaut") -> np.ndarray:
    """An RGB uint8 photo with one real face: 'astronaut' or 'grace_hopper'."""
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    if name == "grace_hopper":
        from matplotlib import cbook

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return np.asarray(Image.open(path).convert("RGB"))
    raise ValueError(f"unknown photo {name!r}")


def animated_frames(*, photos: tuple[str, ...], width: int, height: int, count: int) -> np.ndarray:
    """`count` frames of size width×height with each photo placed side by side, drifting slowly."""
    tiles = []
    tile_w = width // len(photos)
    for name in photos:
        img = Image.fromarray(face_photo(name))
        scale = min(tile_w / img.width, height / img.height) * 0.9
        tiles.append(np.asarray(img.resize((int(img.width * scale), int(img.height * scale)), Image.BILINEAR)))
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    frames[:] = (40, 40, 40)
    for i in range(count):
        shift = int(6 * np.sin(2 * np.pi * i / max(count, 2)))
        for k, tile in enumerate(tiles):
            th, tw = tile.shape[:2]
            x = k * tile_w + (tile_w - tw) // 2 + shift
            y = (height - th) // 2
            x = min(max(x, 0), width - tw)
            frames[i, y : y + th, x : x + tw] = tile
    return frames


def write_video(
    path: Path,
    frames: np.ndarray,
    *,
    fps: float = 30.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    extra_args: tuple[str, ...] = (),
) -> Path:
    """Encode RGB frames with ffmpeg (frames piped raw, nothing held twice)."""
    count, height, width, _ = frames.shape
    cmd = [
        "ffmpeg", "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-c:v", codec, "-pix_fmt", pix_fmt, *extra_args, str(path),
    ]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def make_face_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: float = 10.0,
    width: int = 320,
    height: int = 240,
    photos: tuple[str, ...] = ("astronaut",),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    extra_args: tuple[str, ...] = (),
) -> Path:
    """A short clip of real faces; the default is small so tests stay fast on two cores."""
    count = max(1, int(round(seconds * fps)))
    frames = animated_frames(photos=photos, width=width, height=height, count=count)
    return write_video(path, frames, fps=fps, codec=codec, pix_fmt=pix_fmt, extra_args=extra_args)
