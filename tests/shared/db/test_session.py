"""Engines and migrations on both backends."""
from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from shared.db.models import Base
from shared.db.session import current_revision, head_revision, make_engine, upgrade


def test_upgrade_is_idempotent_and_reaches_head(database_url):
    upgrade(database_url)
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()


def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        pragmas = [connection.execute(text(f"PRAGMA {name}")).scalar()
                   for name in ("journal_mode", "foreign_keys", "busy_timeout")]
    engine.dispose()
    assert pragmas[0] == "wal" and pragmas[1] == 1 and pragmas[2] > 0


def test_shared_db_imports_no_web_worker_or_torch():
    code = ("import sys, shared.db.jobs, shared.db.session, shared.db.artifacts;"
            "print(sorted({'torch', 'flask', 'celery'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
