"""A training run's resumable state: saved atomically every epoch, holding only tensors and
primitives so it loads with `torch.load(..., weights_only=True)`."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from shared.errors import CheckpointFormatError
from shared.files import write_atomically
from shared.model.checkpoints import load_tensors
from shared.model.training.errors import RunStateError

STATE_FILE = "state.pt"
STATE_FORMAT = "deepfake-detector-training-state"
STATE_VERSION = 1


def save_state(state: dict, run_dir: Path) -> Path:
    """Write `state` to RUN_DIR/state.pt via a temporary file and a rename (never half-written)."""
    path = Path(run_dir) / STATE_FILE
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
    write_atomically(path, lambda tmp: torch.save(payload, tmp))
    return path


def load_state(run_dir: Path) -> dict:
    """Read RUN_DIR/state.pt (weights_only); RunStateError if missing or not ours."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise RunStateError(f"nothing to resume: {path} does not exist")
    try:
        state = load_tensors(path, name=str(path))
    except CheckpointFormatError as exc:
        raise RunStateError(f"{path} cannot be read as a training state: {exc.message}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise RunStateError(f"{path} is not a training state of this project")
    if state.get("version") != STATE_VERSION:
        raise RunStateError(f"{path}: unsupported training state version {state.get('version')!r}")
    return state


def capture_rng() -> dict:
    """Every random generator a run touches, as tensors and primitives."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng(rng: dict) -> None:
    """Put back what `capture_rng` saved (CUDA states only when the same GPUs are present)."""
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
