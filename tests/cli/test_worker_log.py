"""A real worker's log after one job carries nothing a user cannot act on: no CUDA_HOME notice on a CPU
machine, no NNCF progress bars or OpenVINO warnings, no Celery advice against root; the job's own lines stay."""
from __future__ import annotations

import re

import pytest

from shared.db import jobs as job_store
from tests.conftest import wait_for
from tests.web.conftest import app, client, session_factory, video_clip  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow
NOISE = (
    re.compile(r"No CUDA runtime is found"),
    re.compile(r"CUDA_HOME"),
    re.compile(r"nncf", re.IGNORECASE),
    re.compile(r"openvino.*(Warning|deprecat)", re.IGNORECASE),
    re.compile(r"root logger", re.IGNORECASE),
    re.compile(r"superuser privileges"),
    re.compile(r"Statistics collection|Fast Bias correction|━"),  # NNCF's calibration progress bars
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_worker_log_after_a_job_has_no_noise(client, settings, video_clip, start_worker, session_factory,  # noqa: F811
                                                  tmp_path):
    from tests.checkpoints import write_constant_checkpoint

    write_constant_checkpoint(settings.weights_dir, fake_probability=0.9, sequence_length=8)
    worker = start_worker(settings, pool="prefork")
    with open(video_clip, "rb") as video:
        response = client.post("/api/v1/jobs", data={"video": (video, "clip.mp4"), "sequence_length": "8",
                                                     "face_detector": "none"})
    assert response.status_code == 202, response.json
    job_id = response.json["id"]

    def ended():
        with session_factory() as session:
            job = job_store.get_job(session=session, owner=None, job_id=job_id)
            return job if job.status in ("succeeded", "failed") else None

    job = wait_for(ended, timeout=240, interval=1, what="the job to end")
    log = (tmp_path / "worker-w1.log").read_text(errors="replace")
    assert job.status == "succeeded", log[-3000:]
    assert worker.poll() is None
    assert f"Task deepfake.analyze_job[" in log and "succeeded" in log  # the log still says what happened
    found = [line for line in log.splitlines() if any(pattern.search(line) for pattern in NOISE)]
    assert found == [], "\n".join(found)


def test_only_those_lines_are_dropped_other_warnings_stay(caplog):
    import logging
    import warnings

    from celery.exceptions import SecurityWarning

    from worker.celery_app import drop_unactionable_output

    drop_unactionable_output()
    drop_unactionable_output()  # idempotent: one filter per logger
    redirected = logging.getLogger("celery.redirected")
    assert len(redirected.filters) == len(set(map(type, redirected.filters)))
    with caplog.at_level(logging.WARNING):
        redirected.warning("W1201 cpp_extension.py:183] No CUDA runtime is found, using CUDA_HOME='/usr/local'")
        redirected.warning("Statistics collection ━━━━━━━━━━━━ 100% 6/6 • 0:00:01 • 0:00:00")
        logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found, using CUDA_HOME='/usr'")
        redirected.warning("the disk is full")
        logging.getLogger("torch.utils.cpp_extension").warning("Error building extension")
    assert [record.getMessage() for record in caplog.records] == ["the disk is full", "Error building extension"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop_unactionable_output()
        warnings.warn(SecurityWarning("You're running the worker with superuser privileges: this is..."))
        warnings.warn(SecurityWarning("something else"))
    assert [str(w.message) for w in caught] == ["something else"]
