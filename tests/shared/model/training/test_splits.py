from pathlib import Path

import pytest

from shared.model.training.errors import DatasetError
from shared.model.training.manifest import ClipRecord
from shared.model.training.splits import split_by_source


def _records() -> list[ClipRecord]:
    records = []
    for video in range(20):
        label = "FAKE" if video % 3 else "REAL"
        for track in range(1 + video % 3):  # several clips (tracks) per source video
            records.append(ClipRecord(clip=Path(f"/c/{video}_{track}.avi"), source=f"v{video:02d}.mp4",
                                      track=track, frames=10, label=label))
    return records


def test_no_source_video_on_both_sides() -> None:
    train, val = split_by_source(_records(), val_fraction=0.3, seed=1)
    assert {r.source for r in train}.isdisjoint({r.source for r in val})
    assert len(train) + len(val) == len(_records())


def test_both_labels_in_validation_and_roughly_the_fraction() -> None:
    train, val = split_by_source(_records(), val_fraction=0.3, seed=1)
    val_sources = {(r.source, r.label) for r in val}
    assert {label for _, label in val_sources} == {"FAKE", "REAL"}
    # 7 REAL and 13 FAKE source videos: round(0.3 × n) of each.
    assert sum(1 for _, label in val_sources if label == "REAL") == 2
    assert sum(1 for _, label in val_sources if label == "FAKE") == 4


def test_deterministic_by_seed() -> None:
    first = split_by_source(_records(), val_fraction=0.3, seed=7)
    again = split_by_source(list(reversed(_records())), val_fraction=0.3, seed=7)
    assert {r.source for r in first[1]} == {r.source for r in again[1]}
    other = split_by_source(_records(), val_fraction=0.3, seed=8)
    assert {r.source for r in first[1]} != {r.source for r in other[1]}


def test_one_source_with_both_labels_is_refused() -> None:
    records = _records() + [ClipRecord(clip=Path("/c/x.avi"), source="v00.mp4", track=9, frames=10, label="FAKE")]
    with pytest.raises(DatasetError, match="v00.mp4"):
        split_by_source(records, val_fraction=0.3, seed=0)


def test_fraction_out_of_range() -> None:
    with pytest.raises(DatasetError):
        split_by_source(_records(), val_fraction=1.0, seed=0)
