"""API keys on SQLite and PostgreSQL: stored hashed, verified, revoked."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from shared.db import keys
from shared.db.models import ApiKey


def _create(session_factory, **kwargs) -> tuple[str, str]:
    with session_factory() as session:
        row, key = keys.create_key(session=session, **kwargs)
        session.commit()
        return row.id, key


def test_a_key_is_stored_only_as_its_sha256(db_session_factory):
    key_id, key = _create(db_session_factory, owner="alice", label="  laptop   cli ")

    with db_session_factory() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.id == key_id))
        stored = [str(value) for value in (row.id, row.secret_sha256, row.owner, row.label)]
    assert key.startswith(f"dfk_{key_id}_") and len(key) == len("dfk_") + 12 + 1 + 43
    assert row.secret_sha256 == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key.split("_", 2)[2] in value for value in stored)
    assert (row.owner, row.admin, row.label, row.revoked_at) == ("alice", False, "laptop cli", None)


def test_verify_takes_the_exact_key_only(db_session_factory):
    key_id, key = _create(db_session_factory, owner="alice")
    _, other = _create(db_session_factory, owner="bob")
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    wrong_id = key.replace(key_id, "0" * 12)

    with db_session_factory() as session:
        assert keys.verify_key(session=session, key=key).owner == "alice"
        assert keys.verify_key(session=session, key=other).owner == "bob"
        for bad in (wrong_secret, wrong_id, key + "x", key.upper(), "", f"Bearer {key}", key_id):
            assert keys.verify_key(session=session, key=bad) is None, bad


def test_a_revoked_key_no_longer_verifies_and_revoking_again_keeps_the_first_time(db_session_factory):
    key_id, key = _create(db_session_factory, owner="alice", admin=True)

    with db_session_factory() as session:
        first = keys.revoke_key(session=session, key_id=key_id)
        session.commit()
        revoked_at = first.revoked_at
        again = keys.revoke_key(session=session, key_id=key_id)
        session.commit()
        assert revoked_at is not None and again.revoked_at == revoked_at
        assert keys.verify_key(session=session, key=key) is None
        assert keys.get_active_key(session=session, key_id=key_id) is None
        assert keys.revoke_key(session=session, key_id="f" * 12) is None


def test_list_shows_every_key_with_its_role(db_session_factory):
    first, _ = _create(db_session_factory, owner="alice")
    second, _ = _create(db_session_factory, owner="ops", admin=True, label="operator")

    with db_session_factory() as session:
        keys.revoke_key(session=session, key_id=first)
        session.commit()
        listed = [(k.id, k.owner, k.admin, k.revoked_at is not None) for k in keys.list_keys(session=session)]
    assert sorted(listed) == sorted([(first, "alice", False, True), (second, "ops", True, False)])


@pytest.mark.parametrize("owner", ["", " alice", "a b", "x" * 201, "ålice", "alice\n"])
def test_an_owner_name_outside_the_allowed_characters_is_refused(db_session_factory, owner):
    with db_session_factory() as session, pytest.raises(keys.InvalidOwnerError):
        keys.create_key(session=session, owner=owner)
