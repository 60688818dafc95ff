"""Resuming an analysis from recorded trunk features: the result equals an uninterrupted run exactly."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import AnalysisCancelled
from shared.model.pipeline import EngineCache, analyze_video
from shared.model.resume import FeatureCheckpoint
from shared.options import AnalysisOptions
from shared.settings import Settings
from tests.checkpoints import write_seed_checkpoint
from tests.media import make_face_clip

SEQ = 4


class FolderChunks:
    """A ChunkStore on a local folder (the worker's goes through the file store)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def names(self) -> list[str]:
        return sorted(path.name for path in self.folder.iterdir())

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def write(self, name: str, path: Path) -> None:
        (self.folder / name).write_bytes(path.read_bytes())

    def delete(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    write_seed_checkpoint(directory, sequence_length=SEQ)
    return EngineCache(Settings(weights_dir=directory))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_face_clip(tmp_path_factory.mktemp("clips") / "two.mp4", seconds=3.0, fps=10, width=320, height=160,
                          photos=("astronaut", "grace_hopper"))


def _options(**overrides) -> AnalysisOptions:
    values = dict(precision="fp32", device="cpu", sequence_length=SEQ, batch_size=4, heatmaps=0, preview=False,
                  face_detector="opencv")
    values.update(overrides)
    return AnalysisOptions(**values)


def _scores(result) -> list:
    return [(t.id, t.verdict, t.fake_probability, [(w.start_frame, w.fake_probability) for w in t.windows])
            for t in result.tracks]


def _interrupted(clip, cache, chunks: FolderChunks, *, options: AnalysisOptions, after_chunks: int) -> None:
    """Run until `after_chunks` chunks are recorded, then stop as a cancelled (or killed) job would."""
    checkpoint = FeatureCheckpoint(chunks, flush_rows=6)
    with pytest.raises(AnalysisCancelled):
        analyze_video(clip, options=options, cache=cache, feature_checkpoint=checkpoint,
                      should_cancel=lambda: len(chunks.names()) >= after_chunks)


def test_a_resumed_run_reuses_the_recorded_features_and_equals_an_uninterrupted_one(clip, cache, tmp_path):
    options = _options()
    uninterrupted = analyze_video(clip, options=options, cache=cache)
    chunks = FolderChunks(tmp_path / "chunks")
    _interrupted(clip, cache, chunks, options=options, after_chunks=2)
    assert len(chunks.names()) >= 2

    resumed = FeatureCheckpoint(chunks, flush_rows=6)
    result = analyze_video(clip, options=options, cache=cache, feature_checkpoint=resumed)

    assert resumed.reused_crops >= 12 and resumed.computed_crops > 0
    assert resumed.reused_crops + resumed.computed_crops == sum(t.frames for t in result.tracks)
    assert _scores(result) == _scores(uninterrupted) and result.tracks
    assert result.verdict == uninterrupted.verdict and result.fake_probability == uninterrupted.fake_probability


def test_a_damaged_or_foreign_recording_is_computed_again_from_where_it_stops_matching(clip, cache, tmp_path):
    options = _options()
    uninterrupted = analyze_video(clip, options=options, cache=cache)
    chunks = FolderChunks(tmp_path / "chunks")
    _interrupted(clip, cache, chunks, options=options, after_chunks=3)
    second = chunks.names()[1]
    (chunks.folder / second).write_bytes(b"not a chunk")

    resumed = FeatureCheckpoint(chunks, flush_rows=6)
    result = analyze_video(clip, options=options, cache=cache, feature_checkpoint=resumed)
    assert 0 < resumed.reused_crops and _scores(result) == _scores(uninterrupted)
    assert (chunks.folder / second).read_bytes() != b"not a chunk"  # rewritten from the damage on

    # Other crops (another margin): nothing recorded matches, so nothing is reused, and the answer is right.
    other = _options(crop_margin=0.2)
    fresh = FeatureCheckpoint(chunks, flush_rows=6)
    assert _scores(analyze_video(clip, options=other, cache=cache, feature_checkpoint=fresh)) == \
        _scores(analyze_video(clip, options=other, cache=cache))
    assert fresh.reused_crops == 0


def test_a_chunk_cut_short_by_a_killed_worker_is_computed_again_not_an_error(clip, cache, tmp_path):
    options = _options()
    uninterrupted = analyze_video(clip, options=options, cache=cache)
    chunks = FolderChunks(tmp_path / "chunks")
    _interrupted(clip, cache, chunks, options=options, after_chunks=3)
    last = chunks.names()[-1]
    whole = (chunks.folder / last).read_bytes()
    (chunks.folder / last).write_bytes(whole[: len(whole) // 2])  # a zip without its directory

    resumed = FeatureCheckpoint(chunks, flush_rows=6)
    result = analyze_video(clip, options=options, cache=cache, feature_checkpoint=resumed)
    assert resumed.reused_crops > 0 and _scores(result) == _scores(uninterrupted)
    assert (chunks.folder / last).read_bytes() != whole[: len(whole) // 2]  # rewritten
