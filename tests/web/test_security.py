"""Security headers, private caching and the cross-site write refusal, on pages, JSON and artifacts."""
from __future__ import annotations

import urllib.request

import pytest

from tests.web.conftest import running_server, uploads


def _post_video(client, video_clip, **headers):
    with open(video_clip, "rb") as video:
        return client.post("/api/v1/jobs", data={"video": (video, "clip.mp4")}, headers=headers)


@pytest.mark.parametrize("path", ["/", "/jobs", "/api/v1/jobs", "/api/v1/openapi.json", "/nope",
                                  "/static/style.css"])
def test_every_response_has_the_security_headers_and_no_version_banner(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Server" not in response.headers


def test_the_werkzeug_server_names_no_versions(app):
    """The handler `serve` runs the app with (the harness uses it too)."""
    with running_server(app) as base, urllib.request.urlopen(f"{base}/") as response:
        assert response.headers.get_all("Server") == ["deepfake"]


def test_the_pages_use_no_inline_script_or_style(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "succeeded")
    for path in ("/", "/jobs", f"/jobs/{job_id}"):
        html = client.get(path).get_data(as_text=True)
        assert " style=" not in html and " onclick=" not in html
        scripts = html.split("<script")[1:]
        assert all(' src="/static/' in s.split(">")[0] or 'type="application/json"' in s.split(">")[0]
                   for s in scripts)


def test_artifacts_and_job_documents_are_not_stored_by_caches(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "succeeded")
    [artifact] = client.get(f"/api/v1/jobs/{job_id}/artifacts").json["artifacts"][:1]
    for path in (artifact["url"], f"/api/v1/jobs/{job_id}", f"/jobs/{job_id}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "private, no-store", path


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example", "null"])
def test_cross_site_posts_are_403_and_change_nothing(client, settings, video_clip, make_job, queued_tasks, origin):
    job_id = make_job()
    refused = [_post_video(client, video_clip, Origin=origin),
               client.post(f"/api/v1/jobs/{job_id}/cancel", headers={"Origin": origin}),
               client.delete(f"/api/v1/jobs/{job_id}", headers={"Origin": origin})]
    for response in refused:
        assert response.status_code == 403
        assert response.json["error"]["code"] == "cross_origin_request"
    assert client.post(f"/jobs/{job_id}/delete", headers={"Origin": origin}).status_code == 403
    assert uploads(settings) == [] and queued_tasks() == []
    assert client.get(f"/api/v1/jobs/{job_id}").json["status"] == "queued"


def test_a_browser_cross_site_post_without_origin_is_refused(client, make_job):
    job_id = make_job()
    response = client.post(f"/api/v1/jobs/{job_id}/cancel", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://localhost"}, {"Sec-Fetch-Site": "same-origin"}])
def test_same_origin_and_origin_less_clients_may_post(client, video_clip, headers):
    assert _post_video(client, video_clip, **headers).status_code == 202
