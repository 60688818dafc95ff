"""`deepfake submit|status|result` against the real web app over HTTP (real database and Redis)."""
from __future__ import annotations

import hashlib
import io
import json
import threading
from typing import Iterator

import pytest
import requests
from werkzeug.formparser import FormDataParser

from cli.client import ApiClient, ForbiddenError, MultipartFile
from cli.main import main
from tests.conftest import wait_for
from tests.media import make_face_clip
# The web tests' fixtures (a real clip; the queue read back from Redis) are reused by import.
from tests.web.conftest import queued_tasks, video_clip  # noqa: F401
from tests.web.conftest import build_app, engine_result, move_job, record_job, running_server


@pytest.fixture
def app(settings):
    app = build_app(settings)
    yield app
    app.extensions["deepfake.db"]["engine"].dispose()


@pytest.fixture
def server(app) -> Iterator[str]:
    with running_server(app) as url:
        yield url


@pytest.fixture
def sessions(app):
    return app.extensions["deepfake.db"]["session_factory"]


def test_multipart_body_streams_exactly_what_werkzeug_parses(tmp_path):
    video = tmp_path / 'clip "one".mp4'
    payload = bytes(range(256)) * 5000
    video.write_bytes(payload)
    seen = []
    body = MultipartFile(path=video, fields={"sequence_length": "8", "precision": "fp32"}, on_read=seen.append)

    chunks, total = [], len(body)
    while piece := body.read(7919):  # an odd size that splits headers and the file
        chunks.append(piece)
    body.close()
    raw = b"".join(chunks)
    _, form, files = FormDataParser().parse(io.BytesIO(raw), "multipart/form-data", len(raw),
                                            {"boundary": body.boundary})

    assert len(raw) == total
    assert form.to_dict() == {"sequence_length": "8", "precision": "fp32"}
    assert files["video"].read() == payload
    assert files["video"].filename == 'clip "one".mp4'  # escaped as browsers do, and decoded back
    assert sum(seen) == len(payload)


def test_submit_uploads_and_prints_the_job_id(server, settings, video_clip, queued_tasks, capsys, sessions):
    from shared.db.jobs import get_job

    code = main(["submit", str(video_clip), "--server", server, "--sequence-length", "8", "--face-detector", "none"])

    out = capsys.readouterr().out.strip()
    assert code == 0
    assert queued_tasks() == [("deepfake.analyze_job", [out])]
    with sessions() as session:
        job = get_job(session=session, owner=settings.owner, job_id=out)
        assert job.params == {"sequence_length": 8, "face_detector": "none"}
        assert job.upload_sha256 == hashlib.sha256(video_clip.read_bytes()).hexdigest()


def test_submit_of_a_non_video_is_one_line_and_non_zero(server, tmp_path, capsys):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all")

    code = main(["submit", str(notes), "--server", server])

    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "\n" not in err and "not_a_video" in err and "HTTP 415" in err


def test_submit_wait_follows_the_job_to_its_verdict(server, settings, video_clip, queued_tasks, capsys, sessions):
    # Play the worker's part with the data layer once the job is queued.
    def finish() -> None:
        [(_, [job_id])] = wait_for(queued_tasks, timeout=30, what="the queued job")
        move_job(sessions, settings, job_id, "succeeded")

    worker = threading.Thread(target=finish)
    worker.start()
    code = main(["submit", str(video_clip), "--server", server, "--wait", "--poll-interval", "0.2"])
    worker.join()

    out = capsys.readouterr().out
    assert code == 0
    assert "Verdict: FAKE" in out and "track 0:" in out and "face 0" not in out


@pytest.fixture
def other_clip(tmp_path):
    """A second, different real clip, so two uploads are two videos."""
    return make_face_clip(tmp_path / "other.mp4", seconds=1.0, width=160, height=120)


def test_submit_of_several_files_queues_one_job_each_and_prints_each_id(server, settings, video_clip, other_clip,
                                                                          queued_tasks, capsys, sessions):
    from shared.db.jobs import get_job

    code = main(["submit", str(video_clip), str(other_clip), "--server", server])

    captured = capsys.readouterr()
    ids = captured.out.split()
    assert code == 0 and len(ids) == 2
    assert sorted(queued_tasks()) == sorted([("deepfake.analyze_job", [job_id]) for job_id in ids])
    with sessions() as session:  # the ids come in the order the files were given
        assert [get_job(session=session, owner=settings.owner, job_id=job_id).upload_name for job_id in ids] == \
            [video_clip.name, other_clip.name]
    assert f"{video_clip}: queued" in captured.err and f"{other_clip}: queued" in captured.err


def test_submit_of_several_files_reports_a_refused_one_and_still_queues_the_rest(server, video_clip, tmp_path,
                                                                                queued_tasks, capsys):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all")

    code = main(["submit", str(notes), str(video_clip), "--server", server])

    captured = capsys.readouterr()
    [job_id] = captured.out.split()
    assert code == 1
    assert queued_tasks() == [("deepfake.analyze_job", [job_id])]
    assert f"deepfake: error: {notes}: " in captured.err and "not_a_video" in captured.err


def test_submit_with_a_missing_file_uploads_nothing(server, video_clip, tmp_path, queued_tasks, capsys):
    code = main(["submit", str(video_clip), str(tmp_path / "nope.mp4"), "--server", server])

    assert code != 0
    assert queued_tasks() == []
    assert "no such file" in capsys.readouterr().err


def test_submit_of_a_folder_points_to_the_batch_command(server, video_clip, queued_tasks, capsys):
    code = main(["submit", str(video_clip), str(video_clip.parent), "--server", server])

    assert code == 2
    assert queued_tasks() == []
    assert f"`deepfake batch {video_clip.parent}`" in capsys.readouterr().err


def test_submit_wait_of_several_files_follows_every_job(server, settings, video_clip, other_clip, queued_tasks,
                                                        capsys, sessions):
    from shared.db.jobs import list_jobs

    def finish() -> None:
        wait_for(lambda: len(queued_tasks()) == 2, timeout=60, what="both jobs queued")
        first, second = (get_job_id(name) for name in (video_clip.name, other_clip.name))
        move_job(sessions, settings, first, "succeeded")
        move_job(sessions, settings, second, "failed")

    def get_job_id(upload_name: str) -> str:
        with sessions() as session:
            jobs, _ = list_jobs(session=session, owner=settings.owner)
            [job] = [job for job in jobs if job.upload_name == upload_name]
            return str(job.id)

    worker = threading.Thread(target=finish)
    worker.start()
    code = main(["submit", str(video_clip), str(other_clip), "--server", server, "--wait", "--poll-interval", "0.2"])
    worker.join()

    captured = capsys.readouterr()
    first, second = captured.out.split()[:2]
    assert code == 1  # one of the two failed
    assert f"{video_clip} (job {first}):" in captured.out and "Verdict: FAKE" in captured.out
    assert f"job {second} failed: [no_decodable_frames]" in captured.err


def test_status_of_a_queued_job(server, settings, sessions, capsys):
    job_id = record_job(sessions, owner=settings.owner)

    assert main(["status", job_id, "--server", server]) == 0
    assert capsys.readouterr().out.strip() == f"{job_id}: queued (position 1 in the queue)"


def test_result_prints_a_summary_or_the_engine_json(server, settings, sessions, capsys):
    job_id = record_job(sessions, owner=settings.owner)
    move_job(sessions, settings, job_id, "succeeded")

    assert main(["result", job_id, "--server", server]) == 0
    assert "Verdict: FAKE" in capsys.readouterr().out
    assert main(["result", job_id, "--server", server, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == engine_result().to_dict()


def test_an_inconclusive_result_reads_as_on_the_job_page(server, settings, sessions, capsys):
    job_id = record_job(sessions, owner=settings.owner)
    move_job(sessions, settings, job_id, "succeeded", result=engine_result(verdict="INCONCLUSIVE", probability=0.539))
    page = requests.get(f"{server}/jobs/{job_id}", timeout=30)

    assert main(["result", job_id, "--server", server]) == 0
    out = capsys.readouterr().out
    assert main(["status", job_id, "--server", server]) == 0
    status = capsys.readouterr().out

    assert page.status_code == 200 and "too close to call" in page.text and "Why the result is inconclusive" in page.text
    assert "Fake probability: 54% (threshold 50%; too close to call)" in out
    assert "Why the result is inconclusive: [few_frames]" in out
    assert status.strip() == f"{job_id}: succeeded: INCONCLUSIVE (fake probability 54%; too close to call)"
    assert "confidence" not in out + status


def test_result_of_a_failed_job_is_its_error(server, settings, sessions, capsys):
    job_id = record_job(sessions, owner=settings.owner)
    move_job(sessions, settings, job_id, "failed")

    code = main(["result", job_id, "--server", server])

    assert code != 0
    assert "[no_decodable_frames]" in capsys.readouterr().err


def test_unknown_job_is_one_line_and_non_zero(server, capsys):
    code = main(["status", "00000000-0000-0000-0000-000000000000", "--server", server])

    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "\n" not in err and "job_not_found" in err and "HTTP 404" in err


def test_unreachable_server_is_one_line_with_a_hint_to_start_one(capsys):
    code = main(["status", "anything", "--server", "127.0.0.1:1"])

    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and "Traceback" not in err
    assert "cannot reach the service at http://127.0.0.1:1 (connection refused)" in err
    assert "deepfake serve" in err and "--server" in err and "DEEPFAKE_SERVER" in err


def test_server_url_without_a_scheme_is_taken_as_http(server, settings, sessions, capsys):
    job_id = record_job(sessions, owner=settings.owner)

    assert main(["status", job_id, "--server", server.removeprefix("http://") + "/"]) == 0
    assert capsys.readouterr().out.strip() == f"{job_id}: queued (position 1 in the queue)"


def test_deepfake_server_in_the_environment_replaces_the_flag(server, settings, sessions, capsys, monkeypatch):
    job_id = record_job(sessions, owner=settings.owner)
    monkeypatch.setenv("DEEPFAKE_SERVER", server.removeprefix("http://"))

    assert main(["status", job_id]) == 0
    assert capsys.readouterr().out.strip() == f"{job_id}: queued (position 1 in the queue)"
    monkeypatch.setenv("DEEPFAKE_SERVER", "http://127.0.0.1:1")
    assert main(["status", job_id, "--server", server]) == 0  # the flag wins


def test_a_server_url_of_another_scheme_is_refused(capsys):
    assert main(["status", "anything", "--server", "ftp://127.0.0.1:8000"]) == 2
    assert "use http:// or https://" in capsys.readouterr().err


# --- a busy service (429): wait as asked, send the same file again ----------------------------------
def _serve(settings, **changes):
    """A web app built with `settings` changed, and the context that serves it over HTTP (yields its URL)."""
    from dataclasses import replace

    app = build_app(replace(settings, **changes))
    return app, running_server(app)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_waits_out_the_rate_limit_and_sends_the_file_again(settings, video_clip, other_clip, redis_url,
                                                                  task_queue, capsys, monkeypatch):
    import time
    import uuid

    import redis

    from cli import busy

    limiter = redis.Redis.from_url(redis_url)
    for _ in range(3):  # a run whose requests straddle a minute boundary sees no 429: run again, fresh owner
        owner, waits, window = f"busy-{uuid.uuid4().hex[:8]}", [], int(time.time() // 60)

        def minute_passes(seconds, owner=owner, waits=waits):
            waits.append(seconds)
            limiter.delete(*limiter.keys(f"deepfake:rate:{task_queue}:{owner}:*"))

        monkeypatch.setattr(busy, "pause", minute_passes)
        app, serving = _serve(settings, rate_limit_per_minute=1, owner=owner)
        with serving as url:
            code = main(["submit", str(video_clip), str(other_clip), "--server", url])
        app.extensions["deepfake.db"]["engine"].dispose()
        if waits or int(time.time() // 60) == window:
            break

    captured = capsys.readouterr()
    assert code == 0 and len(captured.out.split()) == 2  # both files were taken, neither failed
    [waited] = waits
    assert 1 <= waited <= 60  # the service's Retry-After: the seconds to the next window
    assert f"{other_clip}: the service is busy [rate_limited]" in captured.err
    assert f"sending it again in {waited:g} s" in captured.err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_waits_for_active_jobs_to_end_and_gives_up_past_its_patience(settings, video_clip, other_clip,
                                                                          capsys, monkeypatch):
    from sqlalchemy import select

    from cli import busy
    from shared.db.models import Job

    app, serving = _serve(settings, max_active_jobs_per_owner=1)
    sessions = app.extensions["deepfake.db"]["session_factory"]
    waits = []

    def first_job_ends(seconds):
        waits.append(seconds)
        with sessions() as session:
            [job_id] = session.scalars(select(Job.id)).all()
        move_job(sessions, settings, job_id, "succeeded")

    monkeypatch.setattr(busy, "pause", first_job_ends)
    with serving as url:
        code = main(["submit", str(video_clip), str(other_clip), "--server", url])
        assert code == 0 and waits == [busy.DEFAULT_WAIT_S]  # no Retry-After: the default wait
        assert "[too_many_active_jobs]" in capsys.readouterr().err

        monkeypatch.setattr(busy, "pause", waits.append)  # now nothing ends: two waits fit in 25 s, a third not
        monkeypatch.setattr(busy, "PATIENCE_S", 25)
        code = main(["submit", str(video_clip), "--server", url])
    app.extensions["deepfake.db"]["engine"].dispose()

    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert waits == [busy.DEFAULT_WAIT_S] * 3
    assert f"deepfake: error: {video_clip}: " in captured.err and "MAX_ACTIVE_JOBS_PER_OWNER" in captured.err


def test_a_forbidden_request_is_an_access_refusal_naming_the_services_reason(server):
    client = ApiClient(server)
    client.http.headers["Origin"] = "http://elsewhere.example"  # the service forbids a browser's cross-site write

    with pytest.raises(ForbiddenError) as caught:
        client.create_batch(name="night", options={})

    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"the service at {server} forbids this request")
    assert "[cross_origin_request] (HTTP 403)" in message and "--api-key" in message
