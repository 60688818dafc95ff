"""`deepfake weights list|fetch|verify`: the known checkpoints, downloading them, checking the folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` command and its sub-commands (imports nothing heavy)."""
    parser = subparsers.add_parser("weights", help="list, download and verify model checkpoints")
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    parser.set_defaults(handler=lambda args: _usage(parser))

    listing = actions.add_parser("list", help="known checkpoints and whether they are installed")
    _add_weights_dir(listing)
    listing.set_defaults(handler=run_list)

    fetch = actions.add_parser("fetch", help="download known checkpoints (sha256-verified)")
    fetch.add_argument("names", nargs="*", default=["all"], metavar="NAME",
                       help="registry names or file names (default: all downloadable)")
    fetch.add_argument("--base-url", default=None, help="download from this mirror (same file names)")
    fetch.add_argument("--allow-unverified", action="store_true",
                       help="install files that have no published sha256 (prints the sha256 computed)")
    _add_weights_dir(fetch)
    fetch.set_defaults(handler=run_fetch)

    check = actions.add_parser("verify", help="check the sha256 of every file in the weights folder")
    _add_weights_dir(check)
    check.set_defaults(handler=run_verify)


def _add_weights_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="weights folder (default: WEIGHTS_DIR, else weights/)")


def _weights_dir(args: argparse.Namespace) -> Path:
    if args.weights_dir is not None:
        return args.weights_dir
    from shared.settings import Settings

    return Path(Settings.from_env().weights_dir)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_list(args: argparse.Namespace) -> int:
    """Print each known checkpoint: name, file, family, whether present, source."""
    from shared.model.weights_registry import known_weights

    weights_dir = _weights_dir(args)
    for entry in known_weights():
        present = any((weights_dir / name).is_file() for name in entry.filenames)
        check = "sha256" if entry.sha256 else ("sha256 prefix" if entry.sha256_prefix else "no published hash")
        print(f"{'*' if present else ' '} {entry.name:32} {entry.filename:42} {entry.family:20} {check}")
        print(f"    {entry.source}")
    print(f"(* = installed in {weights_dir})")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Download the named checkpoints, with a progress bar on stderr; several names go on past failures."""
    from shared.errors import WeightsError
    from shared.model.weights_registry import known_weights

    weights_dir = _weights_dir(args)
    names = [e.name for e in known_weights() if e.downloadable] if args.names == ["all"] else list(args.names)
    if len(names) == 1:
        _fetch_one(names[0], args=args, weights_dir=weights_dir)
        return 0
    failures = 0
    for name in names:
        try:
            _fetch_one(name, args=args, weights_dir=weights_dir)
        except WeightsError as exc:
            failures += 1
            print(f"deepfake: error [{exc.code}]: {exc.message}", file=sys.stderr)
    return 1 if failures else 0


def _fetch_one(name: str, *, args: argparse.Namespace, weights_dir: Path) -> None:
    from shared.model.weights_registry import fetch

    progress = _ProgressBars()
    try:
        paths = fetch(name, weights_dir=weights_dir, progress=progress, base_url=args.base_url,
                      allow_unverified=args.allow_unverified)
    finally:
        progress.close()
    for path in paths:
        print(f"installed {path}")
    if args.allow_unverified:
        _print_unverified(weights_dir)


def _print_unverified(weights_dir: Path) -> None:
    from shared.files import sha256_file
    from shared.model.weights_registry import STATUS_UNVERIFIED, verify

    for path, status in verify(weights_dir):
        if status == STATUS_UNVERIFIED:
            print(f"unverified: {path.name} sha256 {sha256_file(path)}", file=sys.stderr)


class _ProgressBars:
    """One tqdm bar per file, on stderr."""

    def __init__(self) -> None:
        self._bar = None
        self._name: str | None = None

    def __call__(self, entry, done: int, total: int | None) -> None:
        if self._name != entry.filename:
            self.close()
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=entry.filename, file=sys.stderr)
            self._name = entry.filename
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._name = None, None


def run_verify(args: argparse.Namespace) -> int:
    """Print each file's status; non-zero exit when a checksum does not match."""
    from shared.model.weights_registry import STATUS_MISMATCH, verify

    weights_dir = _weights_dir(args)
    results = verify(weights_dir)
    if not results:
        print(f"no checkpoint files in {weights_dir}")
    for path, status in results:
        print(f"{status:34} {path.name}")
    return 1 if any(status == STATUS_MISMATCH for _, status in results) else 0
