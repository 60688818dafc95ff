"""`deepfake keys create | list | revoke`: the API keys of a service that runs with AUTH=keys.

They act on the database in DATABASE_URL (else the embedded SQLite under DATA_DIR), migrating it to
the newest schema first as `serve` does; on a deployment run them where the web app's environment is
(`docker compose exec web deepfake keys ...`).
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime

from cli.errors import EXIT_INPUT, CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="create, list and revoke API keys (AUTH=keys)",
                                 description="API keys: each acts as one owner, who sees only their own jobs and "
                                             "batches; an admin key sees every owner's.")
    commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    create = commands.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--owner", required=True, help="who the key acts as (letters, digits and . _ @ + -)")
    create.add_argument("--admin", action="store_true", help="the key sees and manages every owner's jobs and batches")
    create.add_argument("--label", default="", help="a note to recognise the key by in `keys list` (e.g. laptop)")
    create.set_defaults(handler=create_command)
    listing = commands.add_parser("list", help="list keys: id, owner, role, label, created, revoked")
    listing.set_defaults(handler=list_command)
    revoke = commands.add_parser("revoke", help="revoke a key at once (its API calls and page logins stop working)")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")
    revoke.set_defaults(handler=revoke_command)


def create_command(args: argparse.Namespace) -> int:
    """Create the key, print it once on stdout, and how to use it on stderr."""
    from shared.db import keys as key_store
    from shared.settings import AUTH_KEYS, Settings

    with _session() as session:
        try:
            row, key = key_store.create_key(session=session, owner=args.owner, admin=args.admin, label=args.label)
        except key_store.InvalidOwnerError as exc:
            raise CommandError(str(exc), EXIT_INPUT) from None
        session.commit()
    print(key, flush=True)
    role = "admin key" if row.admin else "key"
    print(f"created {role} {row.id} for {row.owner!r}. It is shown only now: store it safely. Use it as "
          "DEEPFAKE_API_KEY for the CLI, Authorization: Bearer for the API, or paste it on the login page.",
          file=sys.stderr, flush=True)
    if Settings.from_env().auth != AUTH_KEYS:
        print("note: AUTH is not keys here; a service asks for keys only when started with AUTH=keys",
              file=sys.stderr, flush=True)
    return 0


def list_command(_args: argparse.Namespace) -> int:
    """One line per key, oldest first; revoked keys say when."""
    from shared.db import keys as key_store

    with _session() as session:
        rows = key_store.list_keys(session=session)
    if not rows:
        print("no API keys yet: create one with `deepfake keys create --owner NAME`", file=sys.stderr)
        return 0
    print(f"{'ID':<12}  {'OWNER':<20}  {'ROLE':<5}  {'CREATED':<16}  {'REVOKED':<16}  LABEL")
    for row in rows:
        print(f"{row.id:<12}  {row.owner:<20}  {'admin' if row.admin else 'user':<5}  {_when(row.created_at):<16}  "
              f"{_when(row.revoked_at) or '-':<16}  {row.label}")
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    """Revoke the key now; an unknown id is an error."""
    from shared.db import keys as key_store

    with _session() as session:
        row = key_store.revoke_key(session=session, key_id=args.key_id.strip())
        session.commit()
    if row is None:
        raise CommandError(f"no API key with id {args.key_id!r} (`deepfake keys list` shows them)")
    print(f"revoked key {row.id} of {row.owner!r} (since {_when(row.revoked_at)} UTC)")
    return 0


def _session():
    from cli.service import migrate
    from shared.db.session import make_engine, make_session_factory
    from shared.settings import Settings

    settings = Settings.from_env()
    migrate(settings)
    return _DisposingSession(make_engine(settings.effective_database_url), make_session_factory)


class _DisposingSession:
    """A session whose engine is disposed with it (one command, one connection)."""

    def __init__(self, engine, factory) -> None:
        self.engine, self.session = engine, factory(engine)()

    def __enter__(self):
        return self.session

    def __exit__(self, *exc: object) -> None:
        self.session.close()
        self.engine.dispose()


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""
