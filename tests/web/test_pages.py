"""Server-rendered pages: upload form, job page in each state, jobs list; plain-form fallback."""
from __future__ import annotations

import json
import re

import pytest

from tests.web.conftest import engine_result, page_csrf_token, uploads


def _embedded_job(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="job-data">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def test_upload_page_has_the_form_drop_zone_and_settings(client):
    html = client.get("/").text

    assert 'id="upload-form"' in html and 'enctype="multipart/form-data"' in html
    assert 'id="drop-zone"' in html and 'type="file"' in html and '<label for="video">' in html
    assert "<details>" in html and 'name="sequence_length"' in html and 'name="face_detector"' in html
    assert 'data-api="/api/v1/jobs"' in html
    assert "http://" not in html and "https://" not in html  # no CDN


def test_plain_form_post_redirects_to_the_job_page(client, video_clip, queued_tasks):
    with open(video_clip, "rb") as video:
        response = client.post("/", data={"video": (video, "clip.mp4"), "sequence_length": "",
                                          "csrf_token": page_csrf_token(client)})

    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert response.headers["Location"] == f"/jobs/{job_id}"
    assert queued_tasks() == [("deepfake.analyze_job", [job_id])]


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_plain_form_post_without_this_sessions_token_is_403(client, settings, video_clip, queued_tasks, token):
    page_csrf_token(client)
    fields = {} if token is None else {"csrf_token": token}
    with open(video_clip, "rb") as video:
        response = client.post("/", data={"video": (video, "clip.mp4"), **fields})

    assert response.status_code == 403 and "csrf_token_invalid" in response.text
    assert uploads(settings) == [] and queued_tasks() == []


def test_a_token_from_another_session_is_refused(app, client, video_clip, queued_tasks):
    token = page_csrf_token(app.test_client())
    page_csrf_token(client)
    with open(video_clip, "rb") as video:
        assert client.post("/", data={"video": (video, "clip.mp4"), "csrf_token": token}).status_code == 403


def test_plain_form_post_of_a_non_video_shows_an_error_page(client, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")

    with open(notes, "rb") as video:
        response = client.post("/", data={"video": (video, "notes.txt"), "csrf_token": page_csrf_token(client)})

    assert response.status_code == 415
    assert response.mimetype == "text/html" and "not_a_video" in response.text


def test_queued_job_page_shows_progress_and_queue_position(client, make_job):
    job_id = make_job(name="queued.mp4")

    html = client.get(f"/jobs/{job_id}").text

    assert "<h1>queued.mp4</h1>" in html
    assert 'id="job-progress"' in html and "position 1" in html
    assert _embedded_job(html)["id"] == job_id


def test_succeeded_job_page_shows_verdict_timeline_and_artifacts(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "succeeded")

    html = client.get(f"/jobs/{job_id}").text

    assert 'class="verdict verdict-fake">FAKE<' in html and "91%" in html
    assert 'id="timeline"' in html and "low_resolution" in html
    assert f'src="/api/v1/jobs/{job_id}/artifacts/heatmap-t0-w0.png"' in html
    assert _embedded_job(html)["result"] == engine_result().to_dict()


def test_inconclusive_job_page_lists_the_reasons(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "succeeded", result=engine_result(verdict="INCONCLUSIVE", probability=0.5))

    html = client.get(f"/jobs/{job_id}").text

    assert "verdict-inconclusive" in html and 'id="reasons"' in html and "only 20 frames were analysed" in html


def test_failed_job_page_shows_the_error(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "failed")

    html = client.get(f"/jobs/{job_id}").text

    assert 'id="error-section"' in html and "no_decodable_frames" in html


def test_unknown_job_page_is_an_html_404(client):
    response = client.get("/jobs/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404 and response.mimetype == "text/html"


def test_jobs_page_lists_filters_and_pages(client, make_job, advance_job):
    ids = [make_job(name=f"video-{i}.mp4") for i in range(3)]
    advance_job(ids[0], "succeeded")

    first = client.get("/jobs?limit=2").text
    done = client.get("/jobs?status=succeeded").text

    assert "video-2.mp4" in first and "video-1.mp4" in first and "video-0.mp4" not in first
    assert 'rel="next"' in first
    older = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "video-0.mp4" in client.get(older).text
    assert "video-0.mp4" in done and "video-1.mp4" not in done and "FAKE" in done


def test_static_assets_are_served(client):
    for name in ("style.css", "upload.js", "job.js"):
        assert client.get(f"/static/{name}").status_code == 200


def test_pages_link_an_icon_that_is_served(client):
    """The browser asks for an icon on every page; without one it logged a 404 for /favicon.ico."""
    import re

    page = client.get("/").get_data(as_text=True)
    [href] = re.findall(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', page)
    icon = client.get(href)
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data
