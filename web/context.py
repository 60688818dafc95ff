"""Per-request context: the settings object and who is asking."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request

from shared.settings import AUTH_KEYS, Settings

# The views that record something new for the caller (a job, a batch). There an admin key acts as its
# own owner; everywhere else an admin looks at every owner's work. A view missing here that creates a
# row for an admin fails loudly (no owner), never silently under someone else's name.
CREATING_ENDPOINTS = frozenset({"api.create_job", "batches.create_batch", "pages.upload_form"})


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an owner name, whether it sees every owner's work, and the key used
    (None without accounts: AUTH=none)."""

    owner: str
    admin: bool = False
    key_id: str | None = None


def current_settings() -> Settings:
    """The Settings the app was created with."""
    return current_app.extensions["deepfake.settings"]


def current_principal() -> Principal:
    """Who is asking: set by `web.auth.authenticate` before every view; the configured local owner
    when accounts are off. With accounts on and nobody authenticated this is an error, never a default."""
    principal = g.get("principal")
    if principal is not None:
        return principal
    settings = current_settings()
    if settings.auth == AUTH_KEYS:
        raise LookupError("no authenticated principal on this request")
    return Principal(owner=settings.owner)


def current_owner() -> str | None:
    """The owner every job and batch lookup is scoped to.

    An ordinary key's owner, or the single configured owner without accounts. An admin key's lookups are
    not scoped (None: every owner's), except where it creates something, which it owns itself.
    """
    principal = current_principal()
    if principal.admin and request.endpoint not in CREATING_ENDPOINTS:
        return None
    return principal.owner
