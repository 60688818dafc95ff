"""API keys: create (the key is returned once), verify a presented key, list, revoke.

A key reads `dfk_<id>_<secret>`: `id` (12 hex digits) is public and finds the row; the secret is 256
random bits. Only the SHA-256 of the whole key is stored. A slow password hash buys nothing for a secret
with this much entropy (nobody can enumerate 2^256 candidates), and SHA-256 keeps every request cheap;
the stored and presented digests are compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.models import ApiKey, utcnow

KEY_PREFIX = "dfk"
_KEY = re.compile(r"dfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")
MAX_LABEL = 200
# Compared against when the id is unknown, so an unknown id costs what a wrong secret costs.
_NO_DIGEST = "0" * 64


class InvalidOwnerError(ValueError):
    """An owner name outside [A-Za-z0-9._@+-] or longer than 200 characters."""


def create_key(*, session: Session, owner: str, admin: bool = False, label: str = "") -> tuple[ApiKey, str]:
    """A new key for `owner` (flushed, not committed); returns the row and the key, which is never stored."""
    if not _OWNER.fullmatch(owner):
        raise InvalidOwnerError(f"owner must be 1 to 200 characters of letters, digits and . _ @ + -; got {owner!r}")
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, secret_sha256=digest(key), owner=owner, admin=admin,
                 label=" ".join(label.split())[:MAX_LABEL], created_at=utcnow())
    session.add(row)
    session.flush()
    return row, key


def digest(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def verify_key(*, session: Session, key: str) -> ApiKey | None:
    """The active (not revoked) key row this key belongs to, or None for anything else."""
    match = _KEY.fullmatch(key)
    row = session.get(ApiKey, match.group(1)) if match else None
    stored = row.secret_sha256 if row is not None else _NO_DIGEST
    if not hmac.compare_digest(stored, digest(key)) or row is None or row.revoked_at is not None:
        return None
    return row


def get_active_key(*, session: Session, key_id: str) -> ApiKey | None:
    """The key with this id unless it was revoked (a logged-in page session holds only the id)."""
    row = session.get(ApiKey, key_id)
    return row if row is not None and row.revoked_at is None else None


def list_keys(*, session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(*, session: Session, key_id: str) -> ApiKey | None:
    """Revoke the key now (flushed, not committed); revoking twice keeps the first time. None if no such key."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id).execution_options(populate_existing=True))
