"""Train/validation split by source video: all clips of one video land on the same side.

Deterministic for a given seed, stratified by label so both sides see both classes.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from shared.model.training.errors import DatasetError
from shared.model.training.manifest import ClipRecord


def split_by_source(
    records: list[ClipRecord], *, val_fraction: float, seed: int
) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Return (train, validation). Each label's source videos are shuffled with `seed` and about
    `val_fraction` of them (at least one when the label has two or more) go to validation."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    sources_by_label = _sources_by_label(records)
    rng = np.random.default_rng(seed)
    val_sources: set[str] = set()
    for label in sorted(sources_by_label):
        sources = sorted(sources_by_label[label])
        rng.shuffle(sources)
        val_sources.update(sources[: _validation_count(len(sources), val_fraction)])
    train = [r for r in records if r.source not in val_sources]
    val = [r for r in records if r.source in val_sources]
    return train, val


def _sources_by_label(records: list[ClipRecord]) -> dict[str, set[str]]:
    labels_of: dict[str, set[str]] = defaultdict(set)
    for record in records:
        labels_of[record.source].add(record.label)
    conflicting = sorted(source for source, labels in labels_of.items() if len(labels) > 1)
    if conflicting:
        raise DatasetError(f"source video(s) with clips of both labels: {', '.join(conflicting[:5])}")
    by_label: dict[str, set[str]] = defaultdict(set)
    for source, labels in labels_of.items():
        by_label[next(iter(labels))].add(source)
    return by_label


def _validation_count(count: int, fraction: float) -> int:
    if count < 2:
        return 0
    return min(count - 1, max(1, int(round(count * fraction))))
