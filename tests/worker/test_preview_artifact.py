"""A job run by the worker keeps a preview video among its artifacts; a reused result gets its own copy."""
from __future__ import annotations

import av

from shared.db import jobs
from tests.worker.conftest import FAST_PARAMS
from worker.context import worker_context
from worker.runner import Outcome, run_job


def _artifacts(db_session_factory, job_id: str) -> dict:
    with db_session_factory() as session:
        return {a.name: (a.media_type, a.track_id, a.path, a.size) for a in jobs.list_artifacts(session=session, job_id=job_id)}


def test_the_preview_is_stored_with_the_result_and_copied_when_reused(worker_settings, queue_job, db_session_factory,
                                                                      short_clip):
    context = worker_context(worker_settings)
    first = queue_job(short_clip)
    assert run_job(first, context=context) is Outcome.SUCCEEDED
    second = queue_job(short_clip, params={**FAST_PARAMS, "batch_size": 4})  # the same answer: reused
    assert run_job(second, context=context) is Outcome.SUCCEEDED

    media_type, track_id, path, size = _artifacts(db_session_factory, first)["preview.mp4"]
    assert (media_type, track_id) == ("video/mp4", None)
    stored = worker_settings.artifacts_dir / path
    assert stored.stat().st_size == size
    with av.open(str(stored)) as container:  # the 2 s, 10 fps, 160×120 clip: every frame, under the 15 fps cap
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 160, 120)
        assert sum(1 for _ in container.decode(video=0)) == 20
    copy = _artifacts(db_session_factory, second)["preview.mp4"]
    assert copy[3] == size and copy[2].startswith(f"{second}/")
    assert not [p for p in worker_settings.artifacts_dir.iterdir() if p.name.startswith(".preview-")]


def test_a_job_with_the_preview_turned_off_has_none(worker_settings, queue_job, db_session_factory, short_clip):
    job_id = queue_job(short_clip, params={**FAST_PARAMS, "preview": "false"})

    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.SUCCEEDED
    assert "preview.mp4" not in _artifacts(db_session_factory, job_id)
