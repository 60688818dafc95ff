"""Checkpoints the tests generate (nothing is downloaded): the seed's exact layout, random weights."""
from __future__ import annotations

import math
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


def write_constant_checkpoint(weights_dir: Path, *, fake_probability: float, sequence_length: int = 8) -> Path:
    """A seed-format checkpoint whose every window scores `fake_probability` (to within 0.001), so the
    verdict of any clip follows from the aggregation rules alone (the seed's class 0 is FAKE).

    linear1's bias holds the log-odds; its weights are shrunk, not zeroed, so heatmaps still have a gradient.
    """
    from shared.model.networks import SeedResNeXtLSTM

    torch.manual_seed(0)
    model = SeedResNeXtLSTM()
    with torch.no_grad():
        model.linear1.weight.mul_(1e-4)
        model.linear1.bias.copy_(torch.tensor([math.log(fake_probability), math.log(1 - fake_probability)]))
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"model_90_acc_{sequence_length}_frames_constant.pt"
    torch.save(model.state_dict(), path)
    return path
