"""Turns the engine's typed errors into a one-line message and a non-zero exit status."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from shared.errors import EngineError

EXIT_INPUT = 2
EXIT_FAILURE = 1


class CommandError(Exception):
    """A CLI-level failure with a message for the user (no traceback)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_handler(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    try:
        return int(handler(args) or 0)
    except EngineError as exc:
        print(f"deepfake: error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_INPUT
    except CommandError as exc:
        print(f"deepfake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("deepfake: interrupted", file=sys.stderr)
        return 130
