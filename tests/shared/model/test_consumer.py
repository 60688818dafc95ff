"""WindowConsumer: windows per track, closed when the producer says the tracker ended the track."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from shared.model.stages.consumer import WindowConsumer, WindowPlan
from shared.model.stages.producer import CropOwner, EndedTrack, PreparedBatch
from shared.options import AnalysisOptions

BOX = np.array([0, 0, 8, 8], dtype=np.float32)


class _Embedder:
    """Features that are each crop's first pixel; a window's probability is its mean feature."""

    def __call__(self, crops: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(crops[:, 0, 0, :1].astype(np.float32) / 255)

    def fake_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(1, 2))


def _consumer(**options) -> WindowConsumer:
    engine = SimpleNamespace(embedder=_Embedder(), model=object(), spec=SimpleNamespace(fake_index=1),
                             device=torch.device("cpu"))
    values = dict(batch_size=4, min_track_frames=3, heatmaps=0)
    values.update(options)
    return WindowConsumer(engine=engine, plan=WindowPlan(length=4, stride=4, threshold=0.5),
                          options=AnalysisOptions(**values))


def _batch(track_id: int, frames: range, *, ended: tuple[EndedTrack, ...] = (), end: bool = False) -> PreparedBatch:
    crops = np.full((len(frames), 8, 8, 3), 51, dtype=np.uint8)
    owners = [CropOwner(track_id, f, f / 10, BOX) for f in frames]
    return PreparedBatch(count=len(frames), last_index=frames[-1] if len(frames) else -1,
                         crops=crops if len(frames) else None, owners=owners, ended=ended, end_of_video=end)


def _ended(track_id: int, score: float = 0.9) -> EndedTrack:
    return EndedTrack(track_id=track_id, best_score=score, boxes=())


def test_a_track_is_closed_as_soon_as_the_tracker_ends_it():
    consumer = _consumer()
    consumer.accept(_batch(0, range(0, 6)))  # one full window, two frames left over
    assert [(w.start_frame, w.end_frame) for w in consumer.take_new_windows()] == [(0, 3)]
    consumer.accept(_batch(1, range(6, 10), ended=(_ended(0),)))
    # the closing window of track 0 is scored now, not at the end of the video
    assert sorted((w.track_id, w.start_frame, w.end_frame) for w in consumer.take_new_windows()) == \
        [(0, 2, 5), (1, 6, 9)]
    scored = consumer.finish()
    assert list(scored.tracks) == [0]  # track 1 never ended: the producer's closing batch ends every track


def test_short_and_unconfident_tracks_are_ignored_and_counted():
    consumer = _consumer()
    consumer.accept(_batch(0, range(0, 2)))
    consumer.accept(_batch(1, range(2, 8)))
    consumer.accept(_batch(2, range(8, 14)))
    consumer.accept(PreparedBatch(count=0, last_index=13, crops=None, owners=[], end_of_video=True,
                                  ended=(_ended(0), _ended(1, score=0.2), _ended(2))))
    scored = consumer.finish()
    assert list(scored.tracks) == [2]
    assert (scored.ignored_tracks, scored.unconfident_tracks) == (1, 1)
    assert set(scored.windows) == {2}
    assert scored.frames_analyzed == 14 and scored.last_index == 13


class _StreamsSeen(_Embedder):
    def __init__(self) -> None:
        self.streams: list[int | None] = []

    def __call__(self, crops: np.ndarray, *, streams: int | None = None) -> torch.Tensor:
        self.streams.append(streams)
        return super().__call__(crops)


def test_the_cnn_leaves_a_working_producer_its_cores():
    """While the producer works, the CNN runs on the cores it leaves; when the producer is ahead
    (waiting for room) it takes all of them."""
    from shared.model.runtime.threads import ThreadBudget

    ahead = [False]
    embedder = _StreamsSeen()
    engine = SimpleNamespace(embedder=embedder, model=object(), spec=SimpleNamespace(fake_index=1),
                             device=torch.device("cpu"), threads=ThreadBudget(cores=4))
    consumer = WindowConsumer(engine=engine, plan=WindowPlan(length=4, stride=4, threshold=0.5),
                              options=AnalysisOptions(batch_size=4, min_track_frames=3, heatmaps=0),
                              producer_ahead=lambda: ahead[0])
    consumer.accept(_batch(1, range(0, 4)))
    ahead[0] = True
    consumer.accept(_batch(1, range(4, 8)))
    assert embedder.streams == [2, None]
