"""Running a classifier over a clip data set: FAKE probabilities, labels and the mean loss."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from shared.model.training.data import ClipDataset


@dataclass(frozen=True)
class Scores:
    """Per-clip FAKE probability and truth, in data set order, with the mean cross-entropy."""

    fake_probability: np.ndarray
    is_fake: np.ndarray
    loss: float


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision on CUDA when a dtype is given; a no-op elsewhere."""
    if device.type == "cuda" and dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


@torch.no_grad()
def score_clips(
    model: nn.Module,
    dataset: ClipDataset,
    *,
    device: torch.device,
    batch_size: int,
    workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> Scores:
    """Score every clip of `dataset` (eval mode, one window per clip)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    probabilities, targets, losses = [], [], []
    for windows, labels in tqdm(loader, desc="scoring", unit="batch", disable=not progress, leave=False):
        windows, labels = windows.to(device, non_blocking=True), labels.to(device)
        with autocast_for(device, amp_dtype):
            logits = model(windows)
        logits = logits.float()
        losses.append(F.cross_entropy(logits, labels, reduction="sum").item())
        probabilities.append(torch.softmax(logits, dim=1)[:, dataset.fake_index].cpu().numpy())
        targets.append((labels == dataset.fake_index).cpu().numpy())
    return Scores(
        fake_probability=np.concatenate(probabilities).astype(np.float64),
        is_fake=np.concatenate(targets),
        loss=float(sum(losses) / max(len(dataset), 1)),
    )
