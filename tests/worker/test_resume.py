"""A job whose worker is killed resumes on another worker from the trunk features it recorded, and its
result equals an uninterrupted run's."""
from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from shared.model.pipeline import EngineCache, analyze_video
from shared.options import AnalysisOptions
from tests.conftest import settings_env, stop_process_group, wait_for
from tests.worker.conftest import job_row

PARAMS = {"sequence_length": 8, "face_detector": "none", "precision": "fp32", "batch_size": 4, "heatmaps": 0}


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_worker_s_job_resumes_from_its_recorded_features(
        worker_settings, queue_job, send_analyze, start_worker, db_session_factory, long_clip):
    settings = replace(worker_settings, heartbeat_timeout_s=4)
    env = settings_env(settings, RESUME_CHECKPOINT_CROPS="8")
    first = start_worker(settings, name="first", env=env)
    job_id = queue_job(long_clip, params=PARAMS)
    send_analyze(job_id)
    chunks = settings.data_dir / "checkpoints" / job_id
    wait_for(lambda: chunks.is_dir() and len(list(chunks.rglob("*.npz"))) >= 2, timeout=180,
             what="two recorded chunks on worker 1")
    stop_process_group(first, sig=signal.SIGKILL)

    start_worker(settings, name="second", env=env)
    job = wait_for(lambda: (j := job_row(db_session_factory, job_id)).status in ("succeeded", "failed") and j,
                   timeout=300, what="the job to finish on worker 2")
    assert (job.status, job.attempts) == ("succeeded", 2), job.error_message
    assert job.result["resumed"]["crops_reused"] >= 16
    # An ended job's recording is removed, just after its outcome is committed (so not yet, maybe, now).
    wait_for(lambda: not chunks.exists(), timeout=30, what="the ended job's recording to be removed")

    options = AnalysisOptions.from_mapping({**PARAMS, "device": "cpu"})
    uninterrupted = analyze_video(long_clip, options=options, cache=EngineCache(settings)).to_dict()
    resumed = job.result
    assert [t["frames"] for t in resumed["tracks"]] == [t["frames"] for t in uninterrupted["tracks"]]
    pairs = [(a["fake_probability"], b["fake_probability"])
             for ta, tb in zip(resumed["tracks"], uninterrupted["tracks"]) for a, b in zip(ta["windows"], tb["windows"])]
    assert pairs and max(abs(a - b) for a, b in pairs) <= 1e-6
