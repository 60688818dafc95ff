"""The inference engine: video decoding, faces, networks, checkpoints and the whole-video pipeline.

Framework-free: nothing here imports Flask, Celery or the database layer.
Import submodules directly (``from shared.model.pipeline import Engine``); this package
imports nothing heavy at import time.
"""
