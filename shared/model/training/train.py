"""`deepfake train`: the project's ResNeXt-LSTM (a real temporal LSTM) trained on a clip manifest.

A run directory holds everything: the split (train.csv, val.csv), `state.pt` (resumable, saved
every epoch), `best.pt` (the project checkpoint with the lowest validation loss), the history
(history.json), curves.png and the best epoch's validation scores (val_predictions.csv).
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from shared.model.checkpoints import ModelSpec, load_model, save_checkpoint
from shared.model.networks import PROJECT_KIND, build_model
from shared.model.runtime.devices import select_device
from shared.model.training import metrics, plots
from shared.model.training.augment import AugmentConfig
from shared.model.training.backbone import load_backbone_weights
from shared.model.training.config import TrainConfig
from shared.model.training.data import ClipDataset, Preprocess, eval_sampling_for
from shared.model.training.errors import DatasetError, RunStateError
from shared.model.training.manifest import ClipRecord, read_manifest, write_manifest
from shared.model.training.runstate import STATE_FILE, capture_rng, load_state, restore_rng, save_state
from shared.model.training.scoring import Scores, autocast_for, score_clips
from shared.model.training.splits import split_by_source

BEST_CHECKPOINT = "best.pt"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
PREDICTIONS_FILE = "val_predictions.csv"
_IMPROVEMENT = 1e-6


@dataclass(frozen=True)
class TrainSummary:
    """What a finished (or early-stopped) run produced."""

    run_dir: Path
    best_checkpoint: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    history: list[dict]
    stopped_early: bool
    resumed_from_epoch: int


@dataclass
class _Run:
    """The mutable parts of a run between epochs."""

    config: TrainConfig
    spec: ModelSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None
    history: list[dict]
    train_clips: int = 0
    val_sources: list[str] = field(default_factory=list)
    epoch: int = 0
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped_early: bool = False


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainSummary:
    """Train (or with `resume`, continue) the run in `config.out`; returns its summary."""
    run_dir = Path(config.out)
    saved = _saved_state(run_dir, resume=resume)
    if saved is not None:
        config = _resumed_config(saved, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_records, val_records = _split(config, run_dir)
    _check_same_split(saved, val_records)
    run = _start_run(config, saved=saved)
    run.train_clips = len(train_records)
    run.val_sources = sorted({r.source for r in val_records})
    resumed_from = run.epoch
    train_set, val_set = _datasets(config, run.spec, train_records, val_records)
    loss_weights = _loss_weights(config, train_records, run.spec.fake_index).to(run.device)
    while run.epoch < config.epochs and not run.stopped_early:
        run.epoch += 1
        _run_epoch(run, train_set, val_set, loss_weights=loss_weights, run_dir=run_dir, progress=progress)
    return TrainSummary(
        run_dir=run_dir,
        best_checkpoint=run_dir / BEST_CHECKPOINT,
        epochs_run=run.epoch,
        best_epoch=run.best_epoch,
        best_val_loss=run.best_val_loss,
        history=run.history,
        stopped_early=run.stopped_early,
        resumed_from_epoch=resumed_from,
    )


def _saved_state(run_dir: Path, *, resume: bool) -> dict | None:
    if resume:
        return load_state(run_dir)
    if (run_dir / STATE_FILE).exists():
        raise RunStateError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out")
    return None


def _resumed_config(saved: dict, given: TrainConfig) -> TrainConfig:
    """The run's saved options, with the few a resumed run may change taken from `given`."""
    config = TrainConfig.from_dict(saved["config"])
    if Path(given.manifest).resolve() != Path(config.manifest).resolve():
        raise RunStateError(f"this run was trained on {config.manifest}; resume it with that manifest")
    return config.resumed_with(given)


def _check_same_split(saved: dict | None, val_records: list[ClipRecord]) -> None:
    """A resumed run must validate on the same videos, or clips it trained on could leak in."""
    if saved is None:
        return
    if sorted({r.source for r in val_records}) != list(saved["val_sources"]):
        raise RunStateError("the manifest's validation videos differ from the run's; resume with the same manifest")


# --- data ----------------------------------------------------------------------------------------


def _split(config: TrainConfig, run_dir: Path) -> tuple[list[ClipRecord], list[ClipRecord]]:
    records = read_manifest(Path(config.manifest))
    train_records, val_records = split_by_source(records, val_fraction=config.val_fraction, seed=config.seed)
    for name, subset in (("training", train_records), ("validation", val_records)):
        labels = {r.label for r in subset}
        if labels != {"FAKE", "REAL"}:
            raise DatasetError(
                f"the {name} split needs clips of both labels (has {sorted(labels) or 'none'}); "
                "add source videos of each label or change --val-fraction"
            )
    write_manifest(run_dir / "train.csv", train_records)
    write_manifest(run_dir / "val.csv", val_records)
    return train_records, val_records


def _datasets(config: TrainConfig, spec: ModelSpec, train_records, val_records) -> tuple[ClipDataset, ClipDataset]:
    common = dict(sequence_length=config.sequence_length, preprocess=Preprocess.from_spec(spec), fake_index=spec.fake_index)
    augment = AugmentConfig() if config.augment else None
    train_set = ClipDataset(train_records, sampling=config.sampling, training=True, augment=augment, seed=config.seed, **common)
    val_set = ClipDataset(val_records, sampling=eval_sampling_for(config.sampling), training=False, **common)
    return train_set, val_set


def _class_counts(records: list[ClipRecord], fake_index: int) -> np.ndarray:
    counts = np.zeros(2, dtype=np.float64)
    for record in records:
        counts[fake_index if record.is_fake else 1 - fake_index] += 1
    return counts


def _loss_weights(config: TrainConfig, records: list[ClipRecord], fake_index: int) -> torch.Tensor:
    """Inverse class frequency (mean weight 1) with `--balance loss`; ones otherwise."""
    if config.balance != "loss":
        return torch.ones(2)
    counts = _class_counts(records, fake_index)
    return torch.tensor(counts.sum() / (2.0 * counts), dtype=torch.float32)


def _train_loader(config: TrainConfig, dataset: ClipDataset, *, epoch: int, device: torch.device) -> DataLoader:
    """The epoch's loader; its order depends only on (seed, epoch), so a resumed run repeats it."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    sampler = None
    if config.balance == "sampler":
        counts = _class_counts(dataset.records, dataset.fake_index)
        weights = [1.0 / counts[dataset.label_of(i)] for i in range(len(dataset))]
        sampler = WeightedRandomSampler(weights, num_samples=len(dataset), replacement=True, generator=generator)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator if sampler is None else None,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
    )


# --- model and optimiser -------------------------------------------------------------------------


def _start_run(config: TrainConfig, *, saved: dict | None) -> _Run:
    device = select_device(config.device)
    if saved is not None:
        spec = ModelSpec.from_dict(saved["spec"])
        model = build_model(spec)
        model.load_state_dict(saved["model"])
    else:
        model, spec = _initial_model(config)
    model.to(device)
    amp_dtype = _amp_dtype(config, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    run = _Run(
        config=config,
        spec=spec,
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.5, patience=max(1, config.patience // 2)
        ),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        device=device,
        amp_dtype=amp_dtype,
        history=[],
    )
    if saved is not None:
        _restore(run, saved)
    return run


def _initial_model(config: TrainConfig) -> tuple[nn.Module, ModelSpec]:
    name = config.name or Path(config.out).resolve().name
    if config.init:
        model, base = load_model(Path(config.init), device="cpu")
        spec = replace(base, name=name, sequence_length=config.sequence_length, sha256="", path=None,
                       training={"init": str(config.init), "init_sha256": base.sha256})
    else:
        spec = ModelSpec(name=name, kind=PROJECT_KIND, sequence_length=config.sequence_length,
                         input_size=config.input_size, channel_order="RGB", backbone=config.backbone,
                         hidden_size=config.hidden_size)
        model = build_model(spec)
    if config.backbone_weights:
        load_backbone_weights(model, Path(config.backbone_weights))
    return model, spec


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _restore(run: _Run, saved: dict) -> None:
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    if saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    run.epoch = int(saved["epoch"])
    run.best_val_loss = float(saved["best_val_loss"])
    run.best_epoch = int(saved["best_epoch"])
    run.stale_epochs = int(saved["stale_epochs"])
    run.stopped_early = bool(saved["stopped_early"])
    run.history = list(saved["history"])
    restore_rng(saved["rng"])


def _state(run: _Run) -> dict:
    return {
        "config": run.config.to_dict(),
        "spec": run.spec.to_dict(),
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
        "best_val_loss": run.best_val_loss,
        "best_epoch": run.best_epoch,
        "stale_epochs": run.stale_epochs,
        "stopped_early": run.stopped_early,
        "history": run.history,
        "val_sources": run.val_sources,
        "rng": capture_rng(),
    }


# --- one epoch -----------------------------------------------------------------------------------


def _run_epoch(run: _Run, train_set: ClipDataset, val_set: ClipDataset, *, loss_weights, run_dir: Path, progress: bool) -> None:
    started = time.monotonic()
    train_set.set_epoch(run.epoch)
    loader = _train_loader(run.config, train_set, epoch=run.epoch, device=run.device)
    train_loss, train_accuracy = _fit(run, loader, loss_weights=loss_weights, progress=progress)
    scores = score_clips(run.model, val_set, device=run.device, batch_size=run.config.batch_size,
                         workers=run.config.workers, amp_dtype=run.amp_dtype, progress=progress)
    row = _history_row(run, scores, train_loss=train_loss, train_accuracy=train_accuracy, seconds=time.monotonic() - started)
    run.history.append(row)
    run.scheduler.step(scores.loss)
    improved, run.stale_epochs, run.stopped_early = early_stopping(
        best_loss=run.best_val_loss, stale_epochs=run.stale_epochs, val_loss=scores.loss, patience=run.config.patience)
    if improved:
        _keep_best(run, row, scores, val_set=val_set, run_dir=run_dir)
    save_state(_state(run), run_dir)
    _write_history(run, run_dir)
    if progress:
        tqdm.write(_epoch_line(row, run))


def early_stopping(*, best_loss: float, stale_epochs: int, val_loss: float, patience: int) -> tuple[bool, int, bool]:
    """(improved, epochs without improvement, stop now) after an epoch with `val_loss`."""
    if val_loss < best_loss - _IMPROVEMENT:
        return True, 0, False
    return False, stale_epochs + 1, stale_epochs + 1 >= patience


def _fit(run: _Run, loader: DataLoader, *, loss_weights: torch.Tensor, progress: bool) -> tuple[float, float]:
    run.model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {run.epoch}/{run.config.epochs}", unit="batch", disable=not progress, leave=False)
    for windows, labels in bar:
        windows, labels = windows.to(run.device, non_blocking=True), labels.to(run.device)
        with autocast_for(run.device, run.amp_dtype):
            logits = run.model(windows)
        loss = F.cross_entropy(logits.float(), labels, weight=loss_weights)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), max_norm=5.0)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        total_loss += loss.item() * len(labels)
        correct += int((logits.argmax(dim=1) == labels).sum())
        seen += len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _history_row(run: _Run, scores: Scores, *, train_loss: float, train_accuracy: float, seconds: float) -> dict:
    auc = metrics.roc_auc(scores.is_fake, scores.fake_probability)
    return {
        "epoch": run.epoch,
        "train_loss": float(train_loss),
        "train_accuracy": float(train_accuracy),
        "val_loss": float(scores.loss),
        "val_accuracy": metrics.accuracy(scores.is_fake, scores.fake_probability, threshold=run.spec.threshold),
        "val_auc": auc,
        "lr": float(run.optimizer.param_groups[0]["lr"]),
        "seconds": round(float(seconds), 3),
    }


def _keep_best(run: _Run, row: dict, scores: Scores, *, val_set: ClipDataset, run_dir: Path) -> None:
    run.best_val_loss, run.best_epoch = row["val_loss"], run.epoch
    training = {
        **run.spec.training,
        "manifest": str(run.config.manifest),
        "sampling": run.config.sampling,
        "eval_sampling": val_set.sampling,
        "best_epoch": run.epoch,
        "val_loss": row["val_loss"],
        "val_accuracy": row["val_accuracy"],
        "val_auc": row["val_auc"],
        "train_clips": run.train_clips,
        "val_clips": len(val_set),
        "seed": run.config.seed,
    }
    spec = replace(run.spec, reported_accuracy=round(100.0 * row["val_accuracy"], 2), training=training)
    save_checkpoint(run.model, spec, run_dir / BEST_CHECKPOINT)
    _write_predictions(run_dir / PREDICTIONS_FILE, val_set.records, scores)


def _write_predictions(path: Path, records: list[ClipRecord], scores: Scores) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip", "source", "track", "label", "fake_probability"])
        for record, probability in zip(records, scores.fake_probability):
            writer.writerow([record.clip.as_posix(), record.source, record.track, record.label, f"{probability:.6f}"])
    tmp.replace(path)


def _write_history(run: _Run, run_dir: Path) -> None:
    payload = {"history": run.history, "best_epoch": run.best_epoch, "stopped_early": run.stopped_early}
    tmp = run_dir / f".{HISTORY_FILE}.partial"
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    tmp.replace(run_dir / HISTORY_FILE)
    plots.training_curves(run.history, run_dir / CURVES_FILE)


def _epoch_line(row: dict, run: _Run) -> str:
    auc = f"{row['val_auc']:.3f}" if row["val_auc"] is not None else "n/a"
    flag = " *best*" if run.best_epoch == run.epoch else (" early stop" if run.stopped_early else "")
    return (
        f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
        f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} auc {auc} ({row['seconds']:.1f}s){flag}"
    )
