"""Typed errors of model creation, in the engine's hierarchy so the CLI prints them as one line."""
from __future__ import annotations

from shared.errors import EngineError, InputError


class LabelFileError(InputError):
    """The label file cannot be parsed; the message names the line."""

    code = "invalid_labels"


class ManifestError(InputError):
    """The clip manifest is missing, malformed or names clips that do not exist."""

    code = "invalid_manifest"


class DatasetError(InputError):
    """The data set cannot be used for training (e.g. one class only, nothing to validate on)."""

    code = "invalid_dataset"


class RunStateError(EngineError):
    """A training run directory cannot be resumed or exported (missing or inconsistent state)."""

    code = "invalid_run"
