"""Per-request context: the settings object and who is asking."""
from __future__ import annotations

from flask import current_app

from shared.settings import Settings


def current_settings() -> Settings:
    """The Settings the app was created with."""
    return current_app.extensions["deepfake.settings"]


def current_owner() -> str:
    """The owner every job lookup is scoped to.

    Until accounts exist this is the single configured local owner; an auth layer
    replaces this one function.
    """
    return current_settings().owner
