"""Celery workers: thin task adapters that connect job records (shared.db) to the engine (shared.model).

Importing this package does no work and imports neither torch nor the engine.
"""
