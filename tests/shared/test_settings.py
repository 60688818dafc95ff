"""The one Settings object: what each environment variable sets, the defaults, and what is refused."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared import lanes
from shared.settings import Settings

ENVIRONMENT = {
    "WEIGHTS_DIR": "/srv/weights",
    "DATA_DIR": "/srv/data",
    "DATABASE_URL": "postgresql+psycopg://db/jobs",
    "REDIS_URL": "redis://broker:6379/1",
    "MAX_UPLOAD_MB": "512",
    "SECRET_KEY": "s3cr3t",
    "DEVICE": "cuda",
    "DEFAULT_OWNER": "alice",
    "WORKER_QUEUES": "analysis.gpu,analysis",
    "JOB_MAX_ATTEMPTS": "5",
    "HEARTBEAT_TIMEOUT_S": "30",
    "REQUEUE_LOST_AFTER_S": "90",
    "GPU_LANE_MIN_DURATION_S": "120",
    "UPLOAD_RETENTION_DAYS": "14",
    "MODEL_CACHE_DIR": "/cache/models",
    "ENGINE_THREADS": "6",
    "ENGINE_PROCESSES": "3",
}
EXPECTED = dict(
    weights_dir=Path("/srv/weights"), data_dir=Path("/srv/data"), database_url="postgresql+psycopg://db/jobs",
    redis_url="redis://broker:6379/1", max_upload_mb=512, secret_key="s3cr3t", device="cuda", owner="alice",
    worker_queues=("analysis.gpu", "analysis"), job_max_attempts=5, heartbeat_timeout_s=30,
    requeue_lost_after_s=90, gpu_lane_min_duration_s=120, upload_retention_days=14,
    model_cache_override=Path("/cache/models"), engine_threads=6, engine_processes=3,
)


def test_each_variable_sets_its_field() -> None:
    settings = Settings.from_env(ENVIRONMENT)
    assert {name: getattr(settings, name) for name in EXPECTED} == EXPECTED
    assert settings.model_cache_dir == Path("/cache/models")
    assert settings.effective_database_url == "postgresql+psycopg://db/jobs"


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.weights_dir, settings.data_dir) == (Path("weights"), Path("var"))
    assert (settings.database_url, settings.redis_url, settings.secret_key) == (None, None, None)
    assert (settings.max_upload_mb, settings.device, settings.owner) == (4096, "auto", "local")
    assert settings.worker_queues == lanes.default_worker_queues()
    assert (settings.job_max_attempts, settings.heartbeat_timeout_s, settings.requeue_lost_after_s) == (3, 120, 60)
    assert (settings.gpu_lane_min_duration_s, settings.upload_retention_days) == (600, 0)
    assert (settings.engine_threads, settings.engine_processes) == (0, 1)


def test_empty_values_mean_unset() -> None:
    names = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MODEL_CACHE_DIR", "WORKER_QUEUES", "MAX_UPLOAD_MB",
             "JOB_MAX_ATTEMPTS", "ENGINE_THREADS")
    assert Settings.from_env(dict.fromkeys(names, "")) == Settings()


def test_paths_derive_from_data_dir() -> None:
    settings = Settings.from_env({"DATA_DIR": "/srv/data"})
    assert settings.uploads_dir == Path("/srv/data/uploads")
    assert settings.artifacts_dir == Path("/srv/data/artifacts")
    assert settings.model_cache_dir == Path("/srv/data/cache/models")  # MODEL_CACHE_DIR unset


def test_without_database_url_the_database_is_sqlite_under_data_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"DATA_DIR": "relative/var"})
    # absolute, so processes started elsewhere (workers, migrations) open the same file
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'relative' / 'var' / 'deepfake.db'}"


def test_worker_queues_skip_empty_names() -> None:
    assert Settings.from_env({"WORKER_QUEUES": "a,,b,"}).worker_queues == ("a", "b")
    assert Settings.from_env({"WORKER_QUEUES": ","}).worker_queues == lanes.default_worker_queues()


def test_counts_that_cannot_be_negative_are_clamped() -> None:
    settings = Settings.from_env({"UPLOAD_RETENTION_DAYS": "-3", "ENGINE_PROCESSES": "0"})
    assert (settings.upload_retention_days, settings.engine_processes) == (0, 1)


@pytest.mark.parametrize("name", ["MAX_UPLOAD_MB", "JOB_MAX_ATTEMPTS", "HEARTBEAT_TIMEOUT_S", "ENGINE_THREADS",
                                  "ENGINE_PROCESSES", "UPLOAD_RETENTION_DAYS", "REQUEUE_LOST_AFTER_S"])
@pytest.mark.parametrize("raw", ["ten", "1.5", "0x10"])
def test_a_number_that_is_not_an_integer_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=rf"environment variable {name} must be an integer, got '{raw}'"):
        Settings.from_env({name: raw})


def test_from_env_reads_the_process_environment_when_given_none(monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTS_DIR", "/from/the/process")
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", "7")
    settings = Settings.from_env()
    assert (settings.weights_dir, settings.job_max_attempts) == (Path("/from/the/process"), 7)


def test_settings_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().device = "cpu"  # type: ignore[misc]
