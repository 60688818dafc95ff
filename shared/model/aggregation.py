"""From window probabilities to per-track and per-video verdicts.

Documented rules (also in docs/ARCHITECTURE.md):
- A track's fake probability aggregates its windows' FAKE probabilities (`mean` by default; `median`,
  `max` and `top_quartile` — the mean of the highest quarter — are available).
- A track is FAKE when its probability ≥ threshold + band, REAL when ≤ threshold − band, and
  INCONCLUSIVE ("borderline") in between.
- The video's fake probability is the highest of its tracks' (one manipulated face makes a manipulated
  video). The video is FAKE if any track is FAKE, REAL if every track is REAL, else INCONCLUSIVE.
- No scored track at all → INCONCLUSIVE with `fake_probability` null: nothing was analysed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

FAKE, REAL, INCONCLUSIVE = "FAKE", "REAL", "INCONCLUSIVE"


def aggregate_probabilities(probabilities: Sequence[float], *, method: str) -> float:
    """Combine window probabilities of one track into one number."""
    values = np.asarray(probabilities, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot aggregate an empty list of window probabilities")
    if method == "mean":
        return float(values.mean())
    if method == "median":
        return float(np.median(values))
    if method == "max":
        return float(values.max())
    if method == "top_quartile":
        count = max(1, int(np.ceil(values.size / 4)))
        return float(np.sort(values)[-count:].mean())
    raise ValueError(f"unknown aggregation {method!r}")


def verdict_for(probability: float, *, threshold: float, band: float) -> str:
    """FAKE / REAL outside the uncertainty band around the threshold, INCONCLUSIVE inside it."""
    if probability >= threshold + band:
        return FAKE
    if probability <= threshold - band:
        return REAL
    return INCONCLUSIVE


@dataclass(frozen=True)
class VideoVerdict:
    verdict: str
    fake_probability: float | None


def combine_tracks(track_probabilities: Sequence[float], *, threshold: float, band: float) -> VideoVerdict:
    """The video's verdict from its scored tracks (see the module docstring)."""
    if not track_probabilities:
        return VideoVerdict(INCONCLUSIVE, None)
    verdicts = [verdict_for(p, threshold=threshold, band=band) for p in track_probabilities]
    highest = float(max(track_probabilities))
    if FAKE in verdicts:
        return VideoVerdict(FAKE, highest)
    if all(v == REAL for v in verdicts):
        return VideoVerdict(REAL, highest)
    return VideoVerdict(INCONCLUSIVE, highest)
