"""The job page once a job has ended: the preview (served with Range), the tracks, and what each state means."""
from __future__ import annotations

import re

import pytest

from shared.db import jobs as job_store
from shared.db import reuse
from tests.web.conftest import engine_result
from tests.web.job_media import result_with_preview


@pytest.fixture
def finished_job(make_job, advance_job, video_clip, tmp_path) -> str:
    job_id = make_job()
    advance_job(job_id, "succeeded", result=result_with_preview(video_clip, tmp_path / "made"))
    return job_id


def test_the_preview_is_listed_with_the_pictures(client, finished_job):
    artifacts = client.get(f"/api/v1/jobs/{finished_job}/artifacts").json["artifacts"]

    preview = next(a for a in artifacts if a["name"] == "preview.mp4")
    assert preview["media_type"] == "video/mp4" and preview["track_id"] is None
    assert preview["url"] == f"/api/v1/jobs/{finished_job}/artifacts/preview.mp4"


def test_the_preview_is_served_in_ranges_so_the_browser_can_seek(client, finished_job):
    url = f"/api/v1/jobs/{finished_job}/artifacts/preview.mp4"
    whole = client.get(url)
    part = client.get(url, headers={"Range": "bytes=100-1099"})
    tail = client.get(url, headers={"Range": "bytes=-64"})

    assert whole.status_code == 200 and whole.mimetype == "video/mp4" and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.data[4:8] == b"ftyp" and len(whole.data) > 1100
    assert part.status_code == 206 and part.data == whole.data[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(whole.data)}"
    assert tail.status_code == 206 and tail.data == whole.data[-64:]
    assert client.get(url, headers={"Range": f"bytes={len(whole.data) + 10}-"}).status_code == 416


def test_the_page_plays_the_preview_under_a_policy_that_allows_it(client, finished_job):
    response = client.get(f"/jobs/{finished_job}")
    html = response.text

    assert re.search(rf'<video id="preview" src="/api/v1/jobs/{finished_job}/artifacts/preview.mp4"', html)
    assert 'id="overlay"' in html
    policy = response.headers["Content-Security-Policy"]
    assert "media-src 'self'" in policy and "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "media-src" not in client.get("/jobs").headers["Content-Security-Policy"]  # only where it is needed


def test_pictures_sit_with_their_track_and_gaps_are_explained(client, finished_job):
    html = client.get(f"/jobs/{finished_job}").text

    card = re.search(r'<article class="track-card" id="track-0".*?</article>', html, re.S).group(0)
    assert "track 0" in card and "91% fake" in card and "heatmap-t0-w0.png" in card
    assert "on screen from 0.8 s to 1.9 s" in card
    other = re.search(r'<article class="track-card" id="track-1".*?</article>', html, re.S).group(0)
    assert "heatmap-t0-w0.png" not in other
    assert 'data-start-s="0.0" data-end-s="0.8">no face found from 0.0 s to 0.8 s</li>' in html


def test_status_and_verdict_look_different(client, finished_job):
    html = client.get(f"/jobs/{finished_job}").text

    assert re.search(r'<span id="job-status" class="status"[^>]*>analysis finished</span>', html)
    assert "status-succeeded" not in html
    assert 'class="verdict-block verdict-block-fake"' in html and 'class="verdict verdict-fake">FAKE<' in html
    assert "At least one face in this video looks manipulated" in html
    assert f'<a id="download-json" href="/api/v1/jobs/{finished_job}" download="result-{finished_job}.json">' in html


def test_a_job_without_a_preview_says_so(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "succeeded", result=engine_result(verdict="INCONCLUSIVE", probability=0.5))

    html = client.get(f"/jobs/{job_id}").text

    assert 'id="no-preview"' in html and "<video" not in html
    assert "too close to call" in html and "cannot say whether this video is manipulated" in html


def test_cancelled_and_failed_pages_say_how_far_the_job_got(client, make_job, advance_job, session_factory):
    cancelled, failed = make_job(), make_job()
    advance_job(cancelled, "running")  # 8 of 20 frames
    with session_factory() as session:  # as the worker does when it sees the request between batches
        job_store.request_cancel(session=session, owner=None, job_id=cancelled)
        session.commit()
        assert job_store.cancel_running_job(session=session, job_id=cancelled)
    advance_job(failed, "failed")

    cancelled_html, failed_html = client.get(f"/jobs/{cancelled}").text, client.get(f"/jobs/{failed}").text

    assert 'id="cancelled-section"' in cancelled_html and "after 8 of 20 frames (40%)" in cancelled_html
    assert "upload it again" in cancelled_html
    assert "It stopped after 8 of 20 frames (40%)." in failed_html
    assert "could not be decoded: check that it plays" in failed_html  # what to do for this error code


def test_timings_are_this_jobs_and_a_reused_result_shows_none(client, make_job, advance_job, session_factory):
    first, second = make_job(), make_job()
    advance_job(first, "succeeded")
    advance_job(second, "succeeded")
    with session_factory() as session:  # the second job's result as the worker stores a reused one
        source = job_store.get_job(session=session, owner=None, job_id=first)
        job = job_store.get_job(session=session, owner=None, job_id=second)
        job.result = reuse.reused_result(source)
        session.commit()

    own, reused = client.get(f"/jobs/{first}").text, client.get(f"/jobs/{second}").text

    assert re.search(r'<dd id="timings">total 1\.50 s</dd>', own)
    assert "total 1.50 s" not in reused and "reused the result of job" in reused and f"/jobs/{first}" in reused

