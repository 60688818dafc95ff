"""Proof that training learns, resumes and is measured consistently, on CPU with the tiny backbone.

The data set (see synthetic.py) has REAL face clips and FAKE ones made by a face swap with a
visible seam; both people appear in both classes and every clip is JPEG re-compressed.
"""
from pathlib import Path

import pytest
import torch

from cli.main import main
from shared.model.checkpoints import find_checkpoint, load_model
from shared.model.training.evaluate import evaluate
from shared.model.training.runstate import load_state
from tests.shared.model.training.synthetic import make_dataset

pytestmark = pytest.mark.slow

TRAIN_ARGS = [
    "--backbone", "tiny", "--hidden-size", "32", "--sequence-length", "6", "--input-size", "32",
    "--batch-size", "8", "--lr", "5e-3", "--val-fraction", "0.3", "--patience", "6", "--seed", "0",
    "--workers", "0", "--device", "cpu", "--no-augment",
]


def _adam_steps(state: dict) -> int:
    return int(state["optimizer"]["state"][0]["step"])


def test_trains_from_scratch_resumes_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = make_dataset(tmp_path / "data", clips_per_class=40, frames=8, size=48, seed=0)
    run = tmp_path / "run"

    # An "interrupted" run: two epochs only.
    assert main(["train", str(manifest), "--out", str(run), "--epochs", "2", *TRAIN_ARGS]) == 0
    first = load_state(run)
    assert first["epoch"] == 2 and len(first["history"]) == 2
    steps_per_epoch = _adam_steps(first) // 2
    assert steps_per_epoch == 7  # 56 training clips in batches of 8

    # Without --resume the run is not silently overwritten.
    assert main(["train", str(manifest), "--out", str(run), "--epochs", "4", *TRAIN_ARGS]) == 2

    # Resumed: continues at epoch 3 with the optimiser's state, keeps the first two epochs.
    capsys.readouterr()
    assert main(["train", str(manifest), "--out", str(run), "--epochs", "14", "--resume", *TRAIN_ARGS]) == 0
    assert "resumed after epoch 2" in capsys.readouterr().out
    final = load_state(run)
    assert final["history"][:2] == first["history"]
    assert [row["epoch"] for row in final["history"]] == list(range(1, final["epoch"] + 1))
    assert _adam_steps(final) == steps_per_epoch * final["epoch"]

    best = final["history"][final["best_epoch"] - 1]
    assert best["val_accuracy"] >= 0.9, final["history"]
    assert (run / "curves.png").stat().st_size > 0

    # evaluate reproduces train's validation figures for the best checkpoint.
    result = evaluate(run / "best.pt", run / "val.csv", out_dir=tmp_path / "eval", device="cpu", progress=False)
    assert result.metrics.count == 24
    assert result.metrics.accuracy == pytest.approx(best["val_accuracy"])
    assert result.metrics.roc_auc == pytest.approx(best["val_auc"])
    for name in ("report.md", "roc.png", "confusion.png", "scores.png", "metrics.json"):
        assert (tmp_path / "eval" / name).stat().st_size > 0

    # Exported by name into a weights folder, with the threshold chosen on validation.
    weights = tmp_path / "weights"
    assert main(["export", str(run), "--name", "synthetic", "--weights-dir", str(weights), "--target-fpr", "0.05",
                 "--no-fast-path"]) == 0
    model, spec = load_model(find_checkpoint(weights, name="synthetic"))
    assert spec.name == "synthetic" and spec.backbone == "tiny" and spec.sequence_length == 6
    assert 0.0 < spec.threshold <= 1.0 and spec.threshold != 0.5
    assert spec.reported_accuracy == pytest.approx(100 * best["val_accuracy"], abs=0.01)
    reference, _ = load_model(run / "best.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
