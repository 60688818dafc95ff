"""Test clips with known face tracks: real face photos moving along set paths, the true box of
every face in every frame recorded as the clip is drawn.

Each face is a head-and-shoulders cut of a real photo (`tests.media.face_photo`), scaled so its
face has a set height, its face centred on a point that moves linearly between key frames. Faces
are drawn in order (a later face passes in front of an earlier one); a flat block may cover a
face for some frames (a hand passing). While drawing, every pixel remembers which face it shows,
so each face's visible fraction is exact: a face counts as present in a frame when at least
`PRESENT` of its box is inside the picture and not covered.

The true box of a face is where RetinaFace puts it on the still photo (measured once, below),
moved and scaled with the photo: the same forehead-to-chin convention the detector uses.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from tests.media import face_photo

FPS = 25.0
PRESENT = 0.8  # a face mostly in the picture and uncovered must be tracked
# Face boxes (x1, y1, x2, y2) in the photos, from the published RetinaFace MobileNet0.25 at full size.
FACE_IN_PHOTO = {"astronaut": (178.0, 57.0, 273.0, 177.0), "grace_hopper": (178.0, 106.0, 354.0, 328.0)}
HEAD_MARGIN = 0.6  # the cut around a face, in face sizes on each side: hair, neck, shoulders
BLOCK_RGB = (196, 160, 130)  # the flat block that covers a face


@dataclass(frozen=True)
class FacePath:
    """One face: its photo, key points (frame, centre x, centre y, face height) joined linearly
    (held before the first and after the last), the frames it is in the picture [enters, leaves),
    and the frames [start, stop) a block covers it, if any."""

    photo: str
    keys: tuple[tuple[int, float, float, float], ...]
    enters: int = 0
    leaves: int | None = None
    covered: tuple[int, int] | None = None

    def at(self, frame: int) -> tuple[float, float, float] | None:
        """(centre x, centre y, face height) in `frame`, None when the face is not in the picture."""
        if frame < self.enters or (self.leaves is not None and frame >= self.leaves):
            return None
        frames = [k[0] for k in self.keys]
        return tuple(float(np.interp(frame, frames, [k[i] for k in self.keys])) for i in (1, 2, 3))


@dataclass(frozen=True)
class ClipSpec:
    name: str
    width: int
    height: int
    frames: int
    faces: tuple[FacePath, ...]
    pix_fmt: str = "yuv420p"  # yuv444p for odd sizes (4:2:0 needs even ones)


@dataclass(frozen=True)
class TruthClip:
    """An encoded clip and, per frame and face, the true box (NaN when not in the picture) and
    the fraction of that box that is in the picture and uncovered."""

    path: Path
    spec: ClipSpec
    boxes: np.ndarray  # (frames, faces, 4) float, clipped to the frame
    visible: np.ndarray  # (frames, faces) float in 0..1

    @property
    def present(self) -> np.ndarray:
        """(frames, faces) bool: the face-frames a tracker must cover."""
        return self.visible >= PRESENT


def _drifting() -> ClipSpec:
    return ClipSpec("drifting", 640, 360, 100, (
        FacePath("astronaut", ((0, 150, 170, 90), (99, 470, 200, 125))),))


def _late_and_early() -> ClipSpec:
    # The second face slides in from the right edge well after the start and out of the top before the end.
    return ClipSpec("late_and_early", 640, 360, 125, (
        FacePath("astronaut", ((0, 150, 180, 100), (124, 190, 170, 100))),
        FacePath("grace_hopper", ((30, 720, 200, 95), (50, 470, 190, 95), (80, 430, 170, 100), (100, 440, -80, 100)),
                 enters=30, leaves=100),
    ))


def _crossing() -> ClipSpec:
    # Two faces walk past each other, the second in front; mid-clip their boxes overlap (IoU ~0.3).
    return ClipSpec("crossing", 640, 360, 110, (
        FacePath("astronaut", ((0, 110, 150, 100), (109, 530, 170, 100))),
        FacePath("grace_hopper", ((0, 530, 220, 100), (109, 110, 200, 100))),
    ))


def _occluded() -> ClipSpec:
    # A block hides the face for 8 frames (a third of a second): a hand passing, not a new appearance.
    return ClipSpec("occluded", 640, 360, 100, (
        FacePath("grace_hopper", ((0, 220, 180, 110), (99, 400, 190, 110)), covered=(45, 53)),))


def _hd() -> ClipSpec:
    return ClipSpec("hd", 1280, 720, 100, (
        FacePath("astronaut", ((0, 250, 250, 150), (99, 600, 420, 210))),
        FacePath("grace_hopper", ((0, 1050, 380, 190), (99, 900, 300, 160))),
    ))


def _odd_size() -> ClipSpec:
    return ClipSpec("odd_size", 643, 365, 80, (
        FacePath("grace_hopper", ((0, 180, 190, 100), (79, 430, 170, 115))),), pix_fmt="yuv444p")


CLIPS = {spec.name: spec for spec in (_drifting(), _late_and_early(), _crossing(), _occluded(), _hd(), _odd_size())}


def make_track_clip(directory: Path, name: str) -> TruthClip:
    """Draw and encode the clip `name` (one of CLIPS) into `directory`; returns it with its truth."""
    spec = CLIPS[name]
    path = Path(directory) / f"{name}.mp4"
    boxes = np.full((spec.frames, len(spec.faces), 4), np.nan)
    visible = np.zeros((spec.frames, len(spec.faces)))
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{spec.width}x{spec.height}",
           "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
           "-pix_fmt", spec.pix_fmt, str(path)]
    encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for frame in range(spec.frames):
            image, boxes[frame], visible[frame] = _draw(spec, frame)
            encoder.stdin.write(image.tobytes())
    finally:
        encoder.stdin.close()
        if encoder.wait() != 0:
            raise RuntimeError(f"ffmpeg could not encode {path}")
    return TruthClip(path=path, spec=spec, boxes=boxes, visible=visible)


def _draw(spec: ClipSpec, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = _background(spec.width, spec.height).copy()
    owner = np.full((spec.height, spec.width), -1, dtype=np.int16)  # which face each pixel shows
    boxes = np.full((len(spec.faces), 4), np.nan)
    for k, face in enumerate(spec.faces):
        place = face.at(frame)
        if place is not None:
            boxes[k] = _paste(image, owner, face.photo, place, label=k)
        if place is not None and face.covered is not None and face.covered[0] <= frame < face.covered[1]:
            _cover(image, owner, boxes[k])
    visible = np.zeros(len(spec.faces))
    for k in range(len(spec.faces)):
        if not np.isnan(boxes[k, 0]):
            visible[k] = _visible_fraction(owner, boxes[k], label=k)
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, spec.width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, spec.height)
    return image, clipped, visible


def _paste(image: np.ndarray, owner: np.ndarray, photo: str, place: tuple[float, float, float], *,
           label: int) -> np.ndarray:
    """Draw the head cut with its face centred at (x, y) and `face_h` high; returns the face's box."""
    cx, cy, face_h = place
    head, (fx1, fy1, fx2, fy2) = _head(photo)
    scale = face_h / (fy2 - fy1)
    new_w, new_h = max(1, round(head.width * scale)), max(1, round(head.height * scale))
    sx, sy = new_w / head.width, new_h / head.height
    left = round(cx - (fx1 + fx2) / 2 * sx)
    top = round(cy - (fy1 + fy2) / 2 * sy)
    pixels = np.asarray(head.resize((new_w, new_h), Image.BILINEAR))
    height, width = owner.shape
    x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + new_w, width), min(top + new_h, height)
    if x2 > x1 and y2 > y1:
        image[y1:y2, x1:x2] = pixels[y1 - top : y2 - top, x1 - left : x2 - left]
        owner[y1:y2, x1:x2] = label
    return np.array([left + fx1 * sx, top + fy1 * sy, left + fx2 * sx, top + fy2 * sy])


def _cover(image: np.ndarray, owner: np.ndarray, box: np.ndarray) -> None:
    x1, y1, x2, y2 = box
    grow = 0.2 * (x2 - x1)
    height, width = owner.shape
    left, top = max(int(x1 - grow), 0), max(int(y1 - grow), 0)
    right, bottom = min(int(np.ceil(x2 + grow)), width), min(int(np.ceil(y2 + grow)), height)
    image[top:bottom, left:right] = BLOCK_RGB
    owner[top:bottom, left:right] = -2


def _visible_fraction(owner: np.ndarray, box: np.ndarray, *, label: int) -> float:
    x1, y1, x2, y2 = box
    area = max((x2 - x1) * (y2 - y1), 1.0)
    height, width = owner.shape
    left, top = min(max(int(round(x1)), 0), width), min(max(int(round(y1)), 0), height)
    right, bottom = min(max(int(round(x2)), 0), width), min(max(int(round(y2)), 0), height)
    return float(np.count_nonzero(owner[top:bottom, left:right] == label)) / area


@lru_cache(maxsize=None)
def _head(photo: str) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The photo cut around its face (HEAD_MARGIN), and the face's box within the cut."""
    pixels = face_photo(photo)
    x1, y1, x2, y2 = FACE_IN_PHOTO[photo]
    grow = HEAD_MARGIN * max(x2 - x1, y2 - y1)
    left, top = max(int(x1 - grow), 0), max(int(y1 - grow), 0)
    right, bottom = min(int(x2 + grow), pixels.shape[1]), min(int(y2 + grow), pixels.shape[0])
    head = Image.fromarray(np.ascontiguousarray(pixels[top:bottom, left:right]))
    return head, (x1 - left, y1 - top, x2 - left, y2 - top)


@lru_cache(maxsize=4)
def _background(width: int, height: int) -> np.ndarray:
    """A soft diagonal gradient with faint stripes: not a flat field, nothing face-like."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 60 + 80 * (x / width) + 40 * (y / height) + 6 * np.sin(x / 23.0)
    rgb = np.stack([base, base * 0.9 + 10, base * 0.8 + 25], axis=-1)
    return rgb.clip(0, 255).astype(np.uint8)
