"""Links face detections into tracks, one per person, and carries boxes between detection frames.

Detections come every k-th frame. Each detection round, the tracks' boxes are moved ahead by their
recent velocity, then matched to the new detections greedily by IoU (highest first); what is left
is matched by centre distance relative to face size (fast motion, where boxes no longer overlap).
Unmatched detections start new tracks; a track unmatched for more than `max_missed` rounds ends
(`patience_rounds` turns TRACK_PATIENCE_S into rounds), so a face hidden for a moment keeps its
track. Between detection frames the boxes carried are moved on by the same velocity. Track ids
are small ints from 0 in order of first appearance (confirmation, with `min_hits` > 1).

The tracker alone decides when a track ends: `take_ended` hands over the ids of the tracks that
ended since the last call, `finish` ends them all when the video does, and the stages after it
close their per-track state on those ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shared.model.types import Detection

# How long a face may go undetected and still be the same appearance, so the same track: the
# detector misses a frame now and then, a hand or another person passes in front, the head turns
# away. One second, about what common multi-object trackers keep a lost track for (30 frames);
# much longer and a different person stepping into the same place would take over the track. A
# face hidden for longer starts a new track when it is back.
TRACK_PATIENCE_S = 1.0
# Never fewer rounds than this, so a single missed detection does not split a track, however
# far apart detection rounds are.
MIN_PATIENCE_ROUNDS = 2
_MAX_CENTRE_DISTANCE = 1.0  # in face sizes (the mean of the two boxes' sides)
_MAX_SIZE_RATIO = 2.0
_VELOCITY_FRAMES = 5.0  # velocity is smoothed over about this many frames (see _Track.absorb)
# A face's box grows or shrinks by at most ~2 % a frame when the person walks towards or away from
# the camera; faster changes are partial views (see _steady_size). Over long gaps (a face hidden
# for a while) up to 30 % passes, a person's plausible change in distance in a second.
_STEADY_SIZE_CHANGE = 0.02  # per frame between the two detections
_MAX_SIZE_CHANGE = 0.3


@dataclass
class TrackedBox:
    """A track's box in one frame; `detected` is False when the box was carried from a detection frame."""

    track_id: int
    box: np.ndarray
    score: float
    detected: bool


@dataclass
class _Track:
    box: np.ndarray
    score: float
    last_frame: int
    track_id: int | None = None
    hits: int = 1
    missed: int = 0
    # Of the box's centre only, in pixels per frame: a partly hidden face's box shrinks on one
    # side, which would otherwise read as the face shrinking, and shrink its predicted box away.
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.float32))
    velocity_known: bool = False

    def predicted(self, frame_index: int) -> np.ndarray:
        """The last detected box, its centre moved on by the velocity to `frame_index`."""
        shift = self.velocity * float(frame_index - self.last_frame)
        return self.box + np.concatenate([shift, shift])

    def absorb(self, detection: Detection, frame_index: int) -> None:
        box = np.asarray(detection.box, dtype=np.float32)
        gap = frame_index - self.last_frame
        if gap > 0 and _steady_size(self.box, box, gap=gap):
            measured = (_centre(box) - _centre(self.box)) / float(gap)
            # The first measurement is taken as it is; later ones are smoothed over about
            # _VELOCITY_FRAMES frames, so a box that jitters from frame to frame (detection every
            # frame) does not throw the prediction, while one `gap` frames away counts for more.
            weight = 1.0 - float(np.exp(-gap / _VELOCITY_FRAMES)) if self.velocity_known else 1.0
            self.velocity = ((1.0 - weight) * self.velocity + weight * measured).astype(np.float32)
            self.velocity_known = True
        self.box, self.score, self.last_frame = box, float(detection.score), frame_index
        self.hits += 1
        self.missed = 0


def _steady_size(old: np.ndarray, new: np.ndarray, *, gap: int) -> bool:
    """Whether a box kept its size, as a face's box does from frame to frame.

    A box that shrinks or grows fast is a face being hidden or uncovered, or leaving or entering
    the picture: its centre then moves because of that, not because the face does, so it says
    nothing about the face's velocity.
    """
    change = abs(math.log(_side(new) / _side(old)))
    return change <= min(_STEADY_SIZE_CHANGE * gap, _MAX_SIZE_CHANGE)


def _side(box: np.ndarray) -> float:
    return float(np.sqrt(max(float(box[2] - box[0]), 1e-3) * max(float(box[3] - box[1]), 1e-3)))


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2.0


def patience_rounds(*, round_s: float) -> int:
    """The `max_missed` for detection rounds `round_s` seconds apart: TRACK_PATIENCE_S in rounds."""
    if not round_s > 0:
        return MIN_PATIENCE_ROUNDS
    return max(MIN_PATIENCE_ROUNDS, math.ceil(TRACK_PATIENCE_S / round_s))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes (x1, y1, x2, y2): a (M, 4) × b (N, 4) → (M, N)."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centre distance in face sizes, infinite where the sizes differ by more than _MAX_SIZE_RATIO."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    sa = np.sqrt(np.prod(np.clip(a[:, 2:] - a[:, :2], 1e-3, None), axis=1))
    sb = np.sqrt(np.prod(np.clip(b[:, 2:] - b[:, :2], 1e-3, None), axis=1))
    dist = np.linalg.norm(ca[:, None] - cb[None], axis=-1) / ((sa[:, None] + sb[None]) / 2)
    ratio = np.maximum(sa[:, None] / sb[None], sb[None] / sa[:, None])
    return np.where(ratio <= _MAX_SIZE_RATIO, dist, np.inf)


def _greedy(cost: np.ndarray, *, accept) -> list[tuple[int, int]]:
    """Pairs (row, col) taken best-first (lowest cost) while `accept(cost)` holds; each row/col once."""
    pairs: list[tuple[int, int]] = []
    if cost.size == 0:
        return pairs
    used_r, used_c = set(), set()
    for flat in np.argsort(cost, axis=None, kind="stable"):
        r, c = divmod(int(flat), cost.shape[1])
        if r in used_r or c in used_c:
            continue
        if not accept(cost[r, c]):
            break
        pairs.append((r, c))
        used_r.add(r)
        used_c.add(c)
    return pairs


class FaceTracker:
    """One track per person across detection frames (see the module docstring)."""

    def __init__(self, *, iou_threshold: float = 0.3, max_missed: int = 2, min_hits: int = 1) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.min_hits = min_hits
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._ended: list[int] = []

    def update(self, frame_index: int, detections: list[Detection]) -> list[TrackedBox]:
        """Match a detection frame's faces to the tracks; returns the confirmed tracks seen in it."""
        boxes = np.array([np.asarray(d.box, dtype=np.float32) for d in detections]).reshape(-1, 4)
        pairs = self._match(frame_index, boxes)
        matched_tracks = {t for t, _ in pairs}
        matched_dets = {d for _, d in pairs}
        for t, d in pairs:
            self._tracks[t].absorb(detections[d], frame_index)
        for t, track in enumerate(self._tracks):
            if t not in matched_tracks:
                track.missed += 1
        self._end([t for t in self._tracks if t.missed > self.max_missed])
        for d, detection in enumerate(detections):
            if d not in matched_dets:
                self._tracks.append(_Track(box=boxes[d].copy(), score=float(detection.score),
                                           last_frame=frame_index))
        self._confirm()
        return self._report(detected=True)

    def carry(self, frame_index: int) -> list[TrackedBox]:
        """Boxes for a frame between detection frames: each track seen in the last round, moved on
        by its velocity to where its face is expected in `frame_index`."""
        return self._report(detected=False, frame_index=frame_index)

    def predicted_boxes(self, frame_index: int) -> list[np.ndarray]:
        """Where each live track's face is expected in `frame_index` (confirmed or not)."""
        return [t.predicted(frame_index) for t in self._tracks]

    def take_ended(self) -> list[int]:
        """Ids of the confirmed tracks that ended since the last call, in the order they ended."""
        ended, self._ended = self._ended, []
        return ended

    def finish(self) -> list[int]:
        """End every live track (the video is over); returns all ended ids not yet taken."""
        self._end(list(self._tracks))
        return self.take_ended()

    def _match(self, frame_index: int, boxes: np.ndarray) -> list[tuple[int, int]]:
        if not self._tracks or boxes.shape[0] == 0:
            return []
        predicted = np.stack([t.predicted(frame_index) for t in self._tracks])
        iou = iou_matrix(predicted, boxes)
        pairs = _greedy(-iou, accept=lambda c: -c >= self.iou_threshold)
        rest_t = [i for i in range(len(self._tracks)) if i not in {p[0] for p in pairs}]
        rest_d = [j for j in range(boxes.shape[0]) if j not in {p[1] for p in pairs}]
        if rest_t and rest_d:
            dist = _centre_distance(predicted[rest_t], boxes[rest_d])
            for r, c in _greedy(dist, accept=lambda c: c <= _MAX_CENTRE_DISTANCE):
                pairs.append((rest_t[r], rest_d[c]))
        return pairs

    def _end(self, tracks: list[_Track]) -> None:
        gone = {id(t) for t in tracks}
        self._tracks = [t for t in self._tracks if id(t) not in gone]
        self._ended += sorted(t.track_id for t in tracks if t.track_id is not None)

    def _confirm(self) -> None:
        for track in self._tracks:
            if track.track_id is None and track.hits >= self.min_hits:
                track.track_id = self._next_id
                self._next_id += 1

    def _report(self, *, detected: bool, frame_index: int | None = None) -> list[TrackedBox]:
        out = [
            TrackedBox(track_id=t.track_id, score=t.score, detected=detected,
                       box=t.box.copy() if frame_index is None else t.predicted(frame_index))
            for t in self._tracks
            if t.track_id is not None and t.missed == 0
        ]
        return sorted(out, key=lambda b: b.track_id)
