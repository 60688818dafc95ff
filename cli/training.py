"""`deepfake dataset prepare`, `deepfake train`, `deepfake evaluate`, `deepfake export`: building
detectors from your own labelled videos. Registration imports nothing heavy; handlers do."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.options import DEVICES, FACE_DETECTORS


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_dataset(subparsers)
    _register_train(subparsers)
    _register_evaluate(subparsers)
    _register_export(subparsers)


def _register_dataset(subparsers: argparse._SubParsersAction) -> None:
    dataset = subparsers.add_parser("dataset", help="prepare training data",
                                    description="Prepare training data from labelled videos.")
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION")
    prepare = actions.add_parser(
        "prepare", help="face-crop labelled videos into clips and a manifest",
        description="Face-crop every video of LABELS.csv (paths relative to SRC_DIR) into one clip per face "
                    "track under OUT_DIR, with OUT_DIR/manifest.csv and OUT_DIR/skipped.csv. Resumable: "
                    "finished videos are skipped on a rerun.")
    prepare.add_argument("src_dir", type=Path, metavar="SRC_DIR")
    prepare.add_argument("labels", type=Path, metavar="LABELS.csv",
                         help="`file,label` lines (REAL/FAKE), with or without a header")
    prepare.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    prepare.add_argument("--size", type=int, default=112, help="clip frame size in pixels (default 112)")
    prepare.add_argument("--jobs", type=int, default=1, help="videos processed in parallel (default 1)")
    prepare.add_argument("--face-detector", choices=FACE_DETECTORS, default="auto")
    prepare.add_argument("--detect-every", type=int, default=5, help="run the detector every K-th frame (default 5)")
    prepare.add_argument("--max-frames", type=int, help="use at most the first N frames of each video")
    prepare.add_argument("--min-track-frames", type=int, default=8, help="drop face tracks shorter than this")
    prepare.add_argument("--margin", type=float, default=0.0, help="extra border around each face, as a fraction")
    prepare.add_argument("--device", choices=DEVICES, default="cpu", help="face detector device (default cpu)")
    prepare.set_defaults(handler=run_prepare)
    dataset.set_defaults(handler=lambda args: _usage(dataset))


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a ResNeXt-LSTM on a clip manifest",
                              description="Train this project's ResNeXt-LSTM on MANIFEST (from `dataset prepare`). "
                                          "A checkpoint is saved every epoch; --resume continues an interrupted run.")
    p.add_argument("manifest", type=Path, metavar="MANIFEST")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR after its last saved epoch, with its saved options; "
                        "only --epochs, --patience, --workers and --device may change")
    p.add_argument("--backbone", choices=("resnext50_32x4d", "tiny"), default="resnext50_32x4d")
    p.add_argument("--hidden-size", type=int, default=512, help="LSTM hidden size (default 512)")
    p.add_argument("--sequence-length", type=int, default=20, help="frames per training window (default 20)")
    p.add_argument("--input-size", type=int, default=112, help="network input size in pixels (default 112)")
    p.add_argument("--sampling", choices=("random", "uniform", "first"), default="random",
                   help="frames of a clip in a window: a random run of consecutive frames, evenly spread, "
                        "or the first ones (default random; validation uses the centre run)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (AdamW; default 1e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=5, help="stop after N epochs without a better validation loss")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of source videos held out (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--balance", choices=("loss", "sampler", "none"), default="loss",
                   help="class balancing: weighted loss, weighted sampler, or none (default loss)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="turn augmentations off")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--workers", type=int, default=2, help="data loader processes (default 2)")
    p.add_argument("--backbone-weights", type=Path, help="a torchvision resnext50_32x4d state dict to start from")
    p.add_argument("--init", type=Path, metavar="CHECKPOINT", help="fine-tune from a seed or project checkpoint")
    p.add_argument("--name", help="model name stored in the checkpoint (default: RUN_DIR's name)")
    p.set_defaults(handler=run_train)


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="measure a checkpoint on a clip manifest",
                              description="Accuracy, ROC-AUC, EER, confusion matrix, calibration error and a "
                                          "threshold for a target false-positive rate; a Markdown report with plots.")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    p.add_argument("manifest", type=Path, metavar="MANIFEST")
    p.add_argument("--out", type=Path, help="report folder (default: evaluation/ beside the manifest)")
    p.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate to set a threshold for")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the checkpoint's)")
    p.add_argument("--sequence-length", type=int, help="frames per window (default: the checkpoint's)")
    p.add_argument("--sampling", choices=("center", "uniform", "first"),
                   help="window placement (default: as the checkpoint was validated; the seed: first)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(handler=run_evaluate)


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="install a run's best checkpoint into the weights folder",
                              description="Write RUN_DIR/best.pt to WEIGHTS_DIR/NAME.pt with its metadata and "
                                          "threshold, for `deepfake analyze --weights NAME` and the workers.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--name", help="file name in the weights folder, without .pt (default: the model's name)")
    p.add_argument("--weights-dir", type=Path, help="default: WEIGHTS_DIR")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, help="FAKE threshold to store")
    group.add_argument("--target-fpr", type=float,
                       help="store the threshold that keeps the run's validation false-positive rate at this")
    p.add_argument("--force", action="store_true", help="replace an existing file of that name")
    p.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                   help="do not build the engine's CPU fast path (OpenVINO graph) now; analyze builds it on first use")
    p.set_defaults(handler=run_export)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _progress() -> bool:
    return sys.stderr.isatty()


def run_prepare(args: argparse.Namespace) -> int:
    from shared.model.training.dataset import PrepareOptions, prepare_dataset
    from shared.settings import Settings

    options = PrepareOptions(size=args.size, margin=args.margin, face_detector=args.face_detector,
                             detect_every=args.detect_every, max_frames=args.max_frames,
                             min_track_frames=args.min_track_frames, device=args.device,
                             weights_dir=str(Settings.from_env().weights_dir))
    summary = prepare_dataset(args.src_dir, args.labels, args.out_dir, options=options, jobs=args.jobs,
                              progress=_progress())
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{summary.processed} video(s) processed, {summary.already_done} already done; "
          f"{summary.clips} clip(s) in {summary.manifest}")
    if summary.skipped:
        print(f"{len(summary.skipped)} video(s) without usable faces or unreadable: see {summary.skipped_file}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from shared.model.training.config import TrainConfig
    from shared.model.training.train import train

    config = TrainConfig(
        manifest=str(args.manifest), out=str(args.out), backbone=args.backbone, hidden_size=args.hidden_size,
        sequence_length=args.sequence_length, input_size=args.input_size, sampling=args.sampling,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, epochs=args.epochs,
        patience=args.patience, val_fraction=args.val_fraction, seed=args.seed, balance=args.balance,
        augment=args.augment, amp=args.amp, device=args.device, workers=args.workers,
        backbone_weights=str(args.backbone_weights) if args.backbone_weights else None,
        init=str(args.init) if args.init else None, name=args.name,
    )
    summary = train(config, resume=args.resume, progress=_progress())
    if summary.resumed_from_epoch:
        print(f"resumed after epoch {summary.resumed_from_epoch}")
    for row in summary.history[summary.resumed_from_epoch:]:
        auc = "n/a" if row["val_auc"] is None else f"{row['val_auc']:.4f}"
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
              f"val accuracy {row['val_accuracy']:.4f}, val AUC {auc}")
    stop = " (stopped early: no better validation loss)" if summary.stopped_early else ""
    print(f"best epoch {summary.best_epoch} (val loss {summary.best_val_loss:.4f}): {summary.best_checkpoint}{stop}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from shared.model.training.evaluate import evaluate

    out = args.out or args.manifest.parent / "evaluation"
    result = evaluate(args.checkpoint, args.manifest, out_dir=out, target_fpr=args.target_fpr,
                      threshold=args.threshold, sequence_length=args.sequence_length, sampling=args.sampling,
                      device=args.device, batch_size=args.batch_size, workers=args.workers, progress=_progress())
    m = result.metrics
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return 0
    auc = "n/a" if m.roc_auc is None else f"{m.roc_auc:.4f}"
    eer = "n/a" if m.eer is None else f"{m.eer:.4f}"
    print(f"{m.count} clips ({m.fakes} FAKE, {m.reals} REAL): accuracy {m.accuracy:.4f} at threshold "
          f"{m.threshold:.4g}, ROC-AUC {auc}, EER {eer}, ECE {m.ece:.4f}")
    if m.threshold_at_target_fpr is not None:
        print(f"threshold for FPR <= {m.target_fpr:g}: {m.threshold_at_target_fpr:.6f} "
              f"(FPR {m.fpr_at_target:.4f}, TPR {m.tpr_at_target:.4f})")
    print(f"report: {out / 'report.md'}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from shared.model.training.export import export_run
    from shared.settings import Settings

    weights_dir = args.weights_dir or Settings.from_env().weights_dir
    done = export_run(args.run_dir, weights_dir=weights_dir, name=args.name, threshold=args.threshold,
                      target_fpr=args.target_fpr, force=args.force, fast_path=args.fast_path)
    print(f"exported {done.path} (threshold {done.spec.threshold:.6g}, {done.threshold_source}); "
          f"use it with: deepfake analyze VIDEO --weights {done.path.stem}")
    if done.fast_path:
        print(f"CPU runtime prepared: {done.fast_path}")
    return 0
