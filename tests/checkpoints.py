"""Checkpoints the tests generate (nothing is downloaded): the seed's exact layout, random weights."""
from __future__ import annotations

from pathlib import Path

import torch


def write_seed_checkpoint(weights_dir: Path, *, sequence_length: int = 8, accuracy: int = 90, seed: int = 0) -> Path:
    """A `model_<acc>_acc_<len>_frames_test.pt` state dict as the seed saved it."""
    from shared.model.networks import SeedResNeXtLSTM

    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"model_{accuracy}_acc_{sequence_length}_frames_test.pt"
    if not path.exists():
        torch.manual_seed(seed)
        torch.save(SeedResNeXtLSTM().state_dict(), path)
    return path
