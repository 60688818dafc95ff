"""A small synthetic deepfake data set made from the bundled face photos.

REAL clips: a moving crop around one real face, varying position, scale and brightness per clip.
FAKE clips: the same photos after a real manipulation — the inner face (eyes, nose, mouth) replaced
by the other person's, pasted with a visible elliptical seam — then filmed the same way. Both
people appear in both classes, so identity alone cannot separate them. Every clip is JPEG
re-compressed at a random quality, whatever its class, so compression is no tell either.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.model.training.clips import write_clip
from shared.model.training.manifest import ClipRecord, write_manifest
from tests.media import face_photo

# (x, y, w, h) of each photo's face, found once with OpenCV's frontal Haar cascade.
FACE_BOXES = {"astronaut": (177, 66, 95, 95), "grace_hopper": (155, 105, 222, 222)}
PEOPLE = tuple(FACE_BOXES)


def swapped_photo(target: str, donor: str) -> np.ndarray:
    """`target`'s photo with its inner face replaced by `donor`'s, pasted with a visible seam."""
    image = face_photo(target).copy()
    tx, ty, tw, th = FACE_BOXES[target]
    dx, dy, dw, dh = FACE_BOXES[donor]
    # The inner 70 % of each face box: eyes, nose and mouth.
    inset = lambda x, y, w, h: (x + int(0.15 * w), y + int(0.15 * h), int(0.7 * w), int(0.7 * h))
    tx, ty, tw, th = inset(tx, ty, tw, th)
    dx, dy, dw, dh = inset(dx, dy, dw, dh)
    patch = cv2.resize(face_photo(donor)[dy : dy + dh, dx : dx + dw], (tw, th), interpolation=cv2.INTER_AREA)
    mask = np.zeros((th, tw), dtype=np.float32)
    cv2.ellipse(mask, (tw // 2, th // 2), (tw // 2 - 1, th // 2 - 1), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(tw / 60.0, 0.5))[..., None]
    region = image[ty : ty + th, tx : tx + tw].astype(np.float32)
    image[ty : ty + th, tx : tx + tw] = (mask * patch + (1 - mask) * region).astype(np.uint8)
    return image


def film(photo: np.ndarray, face_box: tuple[int, int, int, int], *, frames: int, size: int,
         rng: np.random.Generator) -> np.ndarray:
    """A face-only clip: a square crop drifting around the face, at a random scale and brightness,
    JPEG re-compressed at a random quality."""
    x, y, w, h = face_box
    side = w * rng.uniform(1.1, 1.5)
    cx = x + w / 2 + rng.uniform(-0.1, 0.1) * w
    cy = y + h / 2 + rng.uniform(-0.1, 0.1) * h
    vx, vy = rng.uniform(-0.01, 0.01, size=2) * w
    gain = rng.uniform(0.8, 1.2)
    quality = int(rng.integers(60, 95))
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        left = int(np.clip(cx + vx * t - side / 2, 0, photo.shape[1] - side))
        top = int(np.clip(cy + vy * t - side / 2, 0, photo.shape[0] - side))
        crop = photo[top : top + int(side), left : left + int(side)]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crop = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[t] = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return out


def make_dataset(root: Path, *, clips_per_class: int, frames: int = 8, size: int = 64, seed: int = 0) -> Path:
    """Write REAL and FAKE clips and their manifest under `root`; returns the manifest path."""
    rng = np.random.default_rng(seed)
    fakes = {person: swapped_photo(person, _other(person)) for person in PEOPLE}
    records = []
    for index in range(clips_per_class):
        person = PEOPLE[index % len(PEOPLE)]
        for label, photo in (("REAL", face_photo(person)), ("FAKE", fakes[person])):
            name = f"{label.lower()}_{index:03d}"
            clip = write_clip(root / "clips" / f"{name}.avi", film(photo, FACE_BOXES[person], frames=frames, size=size, rng=rng))
            records.append(ClipRecord(clip=clip, source=f"{name}.mp4", track=0, frames=frames, label=label))
    return write_manifest(root / "manifest.csv", records)


def _other(person: str) -> str:
    return PEOPLE[1 - PEOPLE.index(person)]
