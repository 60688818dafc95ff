"""Clips as training samples: pick a window of frames, augment it, normalise it as the model's
checkpoint says (size, channel order, mean, std)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.model.crops import resize_rgb
from shared.model.runtime.preprocess import Preprocessor
from shared.model.training.augment import AugmentConfig, augment_clip, draw_params
from shared.model.training.clips import read_clip
from shared.model.training.manifest import ClipRecord

TRAIN_SAMPLINGS = ("random", "uniform", "first")
EVAL_SAMPLINGS = ("center", "uniform", "first")


def eval_sampling_for(train_sampling: str) -> str:
    """The deterministic sampling that validates a model trained with `train_sampling`."""
    return "center" if train_sampling == "random" else train_sampling


class Preprocess:
    """How frames become the network's input, exactly as the engine feeds it: PIL bilinear resize
    (shared.model.crops), then the runtime's channel order and normalisation (from the spec)."""

    def __init__(self, *, size: int, channel_order: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.size = size
        self._normalise = Preprocessor(channel_order=channel_order, mean=mean, std=std, size=size)

    @classmethod
    def from_spec(cls, spec) -> "Preprocess":
        return cls(size=int(spec.input_size), channel_order=spec.channel_order, mean=spec.mean, std=spec.std)

    def __call__(self, frames_rgb: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) RGB uint8 → (T, 3, S, S) float32 normalised."""
        frames = np.stack([_resize(frame, self.size) for frame in frames_rgb])
        return self._normalise(frames)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    return resize_rgb(frame, size=size)


def frame_indices(frames: int, *, length: int, sampling: str, rng: np.random.Generator | None) -> np.ndarray:
    """Which frames of a `frames`-long clip form the window (repeating the last when it is short)."""
    if frames <= length:
        return np.minimum(np.arange(length), frames - 1)
    if sampling == "first":
        return np.arange(length)
    if sampling in ("random", "center"):
        start = int(rng.integers(0, frames - length + 1)) if sampling == "random" else (frames - length) // 2
        return np.arange(start, start + length)
    if sampling == "uniform":
        step = frames / length
        offset = rng.uniform(0, step) if rng is not None else step / 2
        return np.minimum((offset + step * np.arange(length)).astype(int), frames - 1)
    raise ValueError(f"unknown frame sampling {sampling!r}")


class ClipDataset(Dataset):
    """(window tensor (T, 3, S, S), class index) per clip. Randomness (window, augmentation) comes
    from a generator seeded by (seed, epoch, index), so a resumed run sees the same samples."""

    def __init__(
        self,
        records: list[ClipRecord],
        *,
        sequence_length: int,
        sampling: str,
        preprocess: Preprocess,
        fake_index: int,
        training: bool,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        allowed = TRAIN_SAMPLINGS if training else EVAL_SAMPLINGS
        if sampling not in allowed:
            raise ValueError(f"frame sampling {sampling!r} is not one of {', '.join(allowed)}")
        self.records = records
        self.sequence_length = sequence_length
        self.sampling = sampling
        self.preprocess = preprocess
        self.fake_index = fake_index
        self.training = training
        self.augment = augment if training else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def label_of(self, index: int) -> int:
        return self.fake_index if self.records[index].is_fake else 1 - self.fake_index

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        frames = self._window(record, rng)
        if self.augment is not None:
            frames = augment_clip(frames, draw_params(self.augment, rng), rng)
        return self.preprocess(frames), self.label_of(index)

    def _window(self, record: ClipRecord, rng: np.random.Generator) -> np.ndarray:
        random = rng if self.training else None
        wanted = frame_indices(max(record.frames, 1), length=self.sequence_length, sampling=self.sampling, rng=random)
        decoded = read_clip(record.clip, start=int(wanted.min()), count=int(wanted.max() - wanted.min() + 1))
        return decoded[np.minimum(wanted - wanted.min(), len(decoded) - 1)]
