"""One database session per request, from shared.db's session factory, closed at teardown."""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from shared.db.session import make_engine, make_session_factory

_EXTENSION = "deepfake.db"


def init_app(app: Flask) -> None:
    """Create the engine and session factory once per app and close sessions at teardown."""
    settings = app.extensions["deepfake.settings"]
    engine = make_engine(settings.effective_database_url)
    app.extensions[_EXTENSION] = {"engine": engine, "session_factory": make_session_factory(engine)}
    app.teardown_appcontext(close_session)


def get_engine() -> Engine:
    """The app's engine (health checks use it directly)."""
    return current_app.extensions[_EXTENSION]["engine"]


def get_session() -> Session:
    """The request's session, opened on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions[_EXTENSION]["session_factory"]()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    """Teardown: close the request's session if one was opened."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
