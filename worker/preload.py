"""Load the default engine as each worker process starts, so the first job does not pay for it.

Celery sends `worker_process_init` in every prefork child, and in the worker itself with the solo
pool. Its handlers must return within seconds (a prefork child that is not up in time is
replaced), so the load runs in a background thread; a job for the same engine that arrives
meanwhile waits for that load instead of starting a second one. A failed preload is logged and
left to the first job, which then fails (or succeeds) with its own error.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from shared.errors import EngineError
from shared.options import AnalysisOptions
from shared.settings import Settings
from worker.context import worker_context

log = logging.getLogger(__name__)


def connect(app: Celery) -> None:
    """Preload the default engine in each process of `app`'s workers."""

    def start(**_: Any) -> None:
        settings = app.deepfake_settings
        worker_context(settings)  # made here, before any task, so the thread and the first task share it
        threading.Thread(target=preload, args=(settings,), name="deepfake-preload", daemon=True).start()

    worker_process_init.connect(start, weak=False)


def default_options(settings: Settings) -> AnalysisOptions:
    """What a job with no engine settings runs with (as `runner` builds it)."""
    return AnalysisOptions.from_mapping({"device": settings.device})


def preload(settings: Settings) -> None:
    """Remove cached models unused for MODEL_CACHE_KEEP_DAYS, then load the default engine into this
    process's cache; log, never raise."""
    prune_models(settings)
    try:
        engine = worker_context(settings).engine_cache.get(default_options(settings))
    except EngineError as exc:
        log.warning("could not preload the default model (%s): %s; jobs will load what they need",
                    exc.code, exc.message)
    except Exception:  # a preload must never take the worker down
        log.warning("could not preload the default model; jobs will load what they need", exc_info=True)
    else:
        log.info("preloaded the default model in %.1f s", engine.load_s)


def prune_models(settings: Settings) -> None:
    from shared.model.runtime.model_cache import prune_model_cache

    try:
        removed, freed = prune_model_cache(settings.model_cache_dir, keep_days=settings.model_cache_keep_days)
    except OSError as exc:  # a cache folder that cannot be listed: nothing to prune here
        log.info("model cache not pruned: %s", exc)
        return
    if removed:
        log.info("removed %d cached model file(s) unused for %d days (%.0f MB)", removed,
                 settings.model_cache_keep_days, freed / 2**20)
