"""Training-loop behaviour that needs no learning: early stopping, resume edge cases, balancing."""
from pathlib import Path

import pytest
import torch

from shared.model.training.config import TrainConfig
from shared.model.training.errors import RunStateError
from shared.model.training.manifest import read_manifest, write_manifest
from shared.model.training.runstate import load_state
from shared.model.training.train import early_stopping, train
from tests.shared.model.training.synthetic import make_dataset


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny"), clips_per_class=6, frames=4, size=32)


def _config(manifest: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(manifest=str(manifest), out=str(out), backbone="tiny", hidden_size=8, sequence_length=3,
                  input_size=32, batch_size=4, epochs=5, patience=1, val_fraction=0.34, workers=0, device="cpu")
    return TrainConfig(**{**values, **overrides})


def test_early_stopping_rule() -> None:
    assert early_stopping(best_loss=float("inf"), stale_epochs=0, val_loss=0.7, patience=2) == (True, 0, False)
    assert early_stopping(best_loss=0.5, stale_epochs=0, val_loss=0.5, patience=2) == (False, 1, False)
    assert early_stopping(best_loss=0.5, stale_epochs=1, val_loss=0.6, patience=2) == (False, 2, True)
    assert early_stopping(best_loss=0.5, stale_epochs=1, val_loss=0.4, patience=2) == (True, 0, False)


def test_a_run_stops_after_patience_epochs_without_improvement(manifest: Path, tmp_path: Path) -> None:
    # Too small a learning rate to learn: only BatchNorm statistics move the validation loss.
    summary = train(_config(manifest, tmp_path / "run", lr=1e-9, epochs=4, patience=1), progress=False)
    losses = [row["val_loss"] for row in summary.history]
    if summary.stopped_early:
        assert summary.epochs_run == summary.best_epoch + 1 < 4
        assert losses[-1] >= min(losses[:-1]) - 1e-6
    else:
        assert summary.epochs_run == 4 and losses == sorted(losses, reverse=True)
    # Resuming a finished or stopped run trains no further.
    again = train(_config(manifest, tmp_path / "run", lr=1e-9, epochs=4, patience=1), resume=True, progress=False)
    assert again.epochs_run == summary.epochs_run and again.resumed_from_epoch == summary.epochs_run


def test_sampler_balancing_with_augmentation_runs_and_saves_a_loadable_state(manifest: Path, tmp_path: Path) -> None:
    summary = train(_config(manifest, tmp_path / "run", epochs=1, balance="sampler", sampling="uniform"), progress=False)
    state = load_state(tmp_path / "run")  # weights_only=True inside
    assert summary.epochs_run == 1 and state["config"]["balance"] == "sampler"
    assert all(isinstance(v, torch.Tensor) for v in state["model"].values())
    assert isinstance(state["rng"]["torch"], torch.Tensor)


def test_resume_refuses_a_changed_split_or_another_manifest(manifest: Path, tmp_path: Path) -> None:
    own = write_manifest(tmp_path / "manifest.csv", read_manifest(manifest))
    train(_config(own, tmp_path / "run", epochs=1), progress=False)
    with pytest.raises(RunStateError, match="resume it with that manifest"):
        train(_config(manifest, tmp_path / "run", epochs=2), resume=True, progress=False)
    records = read_manifest(own)
    write_manifest(own, [r for r in records if r.source != records[0].source])  # e.g. prepare rerun on other videos
    with pytest.raises(RunStateError, match="validation videos differ"):
        train(_config(own, tmp_path / "run", epochs=2), resume=True, progress=False)


def test_resume_without_a_run_is_an_error(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(RunStateError, match="nothing to resume"):
        train(_config(manifest, tmp_path / "none"), resume=True, progress=False)
