"""Workers load the default model as they start, so the first job does not; a failed preload is not fatal."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from shared.model.checkpoints import ModelSpec, save_checkpoint
from shared.model.networks import resnext_lstm
from shared.settings import Settings
from tests.conftest import wait_for
from worker.context import worker_context
from worker.preload import default_options, preload

PRELOADED = b"preloaded the default model"


def write_tiny_default(weights_dir: Path) -> Path:
    """A small project checkpoint, the default when it is the only one: loads in seconds."""
    torch.manual_seed(6)
    spec = ModelSpec(name="tiny", kind="resnext-lstm", sequence_length=4, input_size=64, backbone="tiny",
                     hidden_size=16)
    return save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), spec, weights_dir / "tiny.pt")


def test_preload_fills_the_process_cache_the_first_job_uses(tmp_path):
    settings = Settings(weights_dir=tmp_path / "weights", data_dir=tmp_path / "data", device="cpu")
    write_tiny_default(settings.weights_dir)
    preload(settings)
    cache = worker_context(settings).engine_cache
    first = cache.get(default_options(settings))
    assert cache.get(default_options(settings)) is first
    assert list(settings.model_cache_dir.glob("*.xml"))


def test_a_failed_preload_is_logged_not_raised(tmp_path, caplog):
    settings = Settings(weights_dir=tmp_path / "empty", data_dir=tmp_path / "data", device="cpu")
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="worker.preload"):
        preload(settings)
    [record] = caplog.records
    assert "could not preload the default model (weights_not_found)" in record.getMessage()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_worker_process_preloads_at_start_and_the_first_job_runs_on_it(
        settings, start_worker, queue_job, send_analyze, db_session_factory, short_clip, tmp_path):
    write_tiny_default(settings.weights_dir)
    start_worker(settings, pool="prefork", concurrency=2)
    log = tmp_path / "worker-w1.log"
    wait_for(lambda: log.read_bytes().count(PRELOADED) == 2, timeout=180, what="both processes to preload")
    assert list(settings.model_cache_dir.glob("*.xml"))  # built once, under the lock, by one of them
    job_id = queue_job(short_clip, params={})  # the default engine
    send_analyze(job_id)

    def finished():
        from shared.db.models import Job

        with db_session_factory() as session:
            job = session.get(Job, job_id)
            return job if job.status in ("succeeded", "failed") else None

    job = wait_for(finished, timeout=120, what="the job to finish")
    assert (job.status, job.error_code) == ("succeeded", None)
