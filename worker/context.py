"""Per-process worker state: the settings, a database session factory and the engine cache.

Built lazily in each process after any fork (as it starts, for the preload, or on its first task),
so a prefork parent never opens database connections or initialises CUDA, and the model loads once
per process.
"""
from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared.db.session import make_engine, make_session_factory
from shared.settings import Settings


@dataclass
class WorkerContext:
    settings: Settings
    session_factory: sessionmaker[Session]
    pid: int
    _engine_cache: Any = field(default=None, repr=False)
    _store: Any = field(default=None, repr=False)
    _engine_cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{self.pid}"

    @property
    def engine_cache(self) -> Any:
        """The process's shared.model.pipeline.EngineCache (imports torch on first use)."""
        with self._engine_cache_lock:  # the preload thread and the first task may ask at once
            if self._engine_cache is None:
                from shared.model.pipeline import EngineCache

                self._engine_cache = EngineCache(self.settings)
            return self._engine_cache


    @property
    def store(self) -> Any:
        """Where uploads come from and artifacts go (shared.storage; S3 or DATA_DIR itself)."""
        if self._store is None:
            from shared.storage import make_store

            self._store = make_store(self.settings)
        return self._store


_context: WorkerContext | None = None


def worker_context(settings: Settings) -> WorkerContext:
    """This process's context, created on first use and again in a forked child."""
    global _context
    if _context is None or _context.pid != os.getpid() or _context.settings != settings:
        engine = make_engine(settings.effective_database_url)
        _context = WorkerContext(settings=settings, session_factory=make_session_factory(engine), pid=os.getpid())
    return _context
