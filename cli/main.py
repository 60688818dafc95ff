"""Entry point of the `deepfake` console script.

Each area registers its own subcommands; registration imports nothing heavy, so
`deepfake web` never loads torch. Handlers import what they need when they run.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

DISTRIBUTION = "deepfake-detector"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# Modules that define `register(subparsers)`. Each must import: a missing one is a broken install,
# and skipping it would hide whole commands without a word.
COMMAND_MODULES = (
    "cli.analyze",
    "cli.weights",
    "cli.service",
    "cli.client",
    "cli.batch",
    "cli.keys",
    "cli.training",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake", description="Deepfake video detection.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def package_version() -> str:
    """The installed distribution's version; from pyproject.toml when running from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        import tomllib

        with open(PYPROJECT, "rb") as file:
            return tomllib.load(file)["project"]["version"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    from cli.errors import run_handler

    return run_handler(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
