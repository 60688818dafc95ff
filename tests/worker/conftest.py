"""Worker fixtures: a generated checkpoint, uploaded clips, and queued jobs in the test's database."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Callable

import pytest
from celery import Celery

from shared.db import jobs
from shared.db.models import Job
from shared.settings import Settings
from tests.checkpoints import write_seed_checkpoint
from tests.media import make_face_clip

def job_row(db_session_factory, job_id: str) -> Job:
    """The job's row as the database has it now."""
    with db_session_factory() as session:
        return session.get(Job, job_id)


FAST_PARAMS = {"sequence_length": 8, "face_detector": "none", "precision": "fp32", "batch_size": 8}


@pytest.fixture(scope="session")
def seed_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seed_checkpoint(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 10 fps, 160x120: a CPU job of a few seconds."""
    return make_face_clip(tmp_path_factory.mktemp("clips") / "short.mp4", width=160, height=120)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s at 10 fps in batches of 4: long enough to kill a worker in the middle of it."""
    return make_face_clip(tmp_path_factory.mktemp("clips") / "long.mp4", seconds=6, width=160, height=120)


@pytest.fixture
def worker_settings(settings: Settings, seed_checkpoint: Path) -> Settings:
    (settings.weights_dir / seed_checkpoint.name).symlink_to(seed_checkpoint)
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    return settings


@pytest.fixture
def queue_job(worker_settings: Settings, db_session_factory) -> Callable[..., str]:
    """Store `video` as an upload and create a queued job for it; returns the job id."""
    def queue(video: Path | None, *, params: dict | None = None, owner: str = "local",
              lane: str = "interactive") -> str:
        stored_name = f"upload-{hashlib.sha1(str(video).encode()).hexdigest()[:12]}.mp4"
        if video is not None:
            shutil.copy(video, worker_settings.uploads_dir / stored_name)
        data = video.read_bytes() if video is not None else b""
        with db_session_factory() as session:
            job = jobs.create_job(session=session, owner=owner, params=dict(FAST_PARAMS if params is None else params),
                                  upload_name="clip.mp4", stored_name=stored_name, upload_size=len(data),
                                  upload_sha256=hashlib.sha256(data).hexdigest(), lane=lane)
            session.commit()
            return job.id
    return queue


@pytest.fixture
def send_analyze(worker_settings: Settings):
    """Enqueue `deepfake.analyze_job` by name, as the web app does."""
    client = Celery("test-client", broker=worker_settings.redis_url, set_as_current=False)
    yield lambda job_id: client.send_task("deepfake.analyze_job", args=[job_id],
                                          queue=worker_settings.worker_queues[0])
    client.close()
