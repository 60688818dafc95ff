"""Alembic environment: run with a connection handed in by `shared.db.session.upgrade`,
or, from the `alembic` command line, with `sqlalchemy.url` from the config."""
from __future__ import annotations

from alembic import context

from shared.db.models import Base
from shared.db.session import make_engine

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `deepfake db upgrade`")
run_migrations_online()
