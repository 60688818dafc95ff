"""AUTH=keys on the real database and Redis: 401s, owner isolation on every route, admin keys, the login page."""
from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.db import batches as batch_store
from shared.db import jobs as job_store
from shared.db import keys as key_store
from tests.web.conftest import build_app, page_csrf_token
from web.auth import OPEN_ENDPOINTS

ARTIFACT = "heatmap-t0-w0.png"
# Values for every path argument a route may have; a route with another argument fails the sweeps
# below until it is added here (and checked for its owner).
OPEN_PATHS = {"health.healthz": "/healthz", "health.readyz": "/readyz", "metrics.metrics": "/metrics",
              "static": "/static/style.css", "api.openapi_document": "/api/v1/openapi.json"}


@pytest.fixture
def keys_app(settings) -> Iterator[Flask]:
    app = build_app(replace(settings, auth="keys"))
    yield app
    app.extensions["deepfake.db"]["engine"].dispose()


@pytest.fixture
def new_key(keys_app):
    def create(owner: str, *, admin: bool = False) -> tuple[str, str]:
        with keys_app.extensions["deepfake.db"]["session_factory"]() as session:
            row, key = key_store.create_key(session=session, owner=owner, admin=admin)
            session.commit()
            return row.id, key

    return create


@pytest.fixture
def alice_work(make_job, advance_job, keys_app) -> dict[str, str]:
    """Alice's finished job (with an artifact), her queued job and her batch."""
    done = make_job(owner="alice", name="alice-done.mp4")
    advance_job(done, "succeeded")
    queued = make_job(owner="alice", name="alice-queued.mp4")
    with keys_app.extensions["deepfake.db"]["session_factory"]() as session:
        batch = batch_store.create_batch(session=session, owner="alice", name="alice-batch", params={})
        session.commit()
        return {"done": done, "queued": queued, "batch": batch.id}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _login(client: FlaskClient, key: str, *, next_path: str = "/"):
    token = page_csrf_token(client, "/login")
    return client.post("/login", data={"csrf_token": token, "api_key": key, "next": next_path})


def _route_path(rule, values: dict[str, str]) -> str:
    missing = set(rule.arguments) - set(values)
    if missing:
        pytest.fail(f"route {rule.rule} has argument(s) {missing}: add them to this test and check their owner")
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", values[name], path)
    return path


def _routes(app: Flask):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def test_the_api_without_a_valid_key_is_401_with_www_authenticate(keys_app, new_key):
    key_id, key = new_key("alice")
    client = keys_app.test_client()
    with keys_app.extensions["deepfake.db"]["session_factory"]() as session:
        key_store.revoke_key(session=session, key_id=new_key("bob")[0])
        revoked = [k for k in key_store.list_keys(session=session) if k.revoked_at]
        session.commit()
    assert len(revoked) == 1

    missing = client.get("/api/v1/jobs")
    assert missing.status_code == 401 and missing.json["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="deepfake"'
    for headers in (_bearer(key[:-2] + "xx"), _bearer("nonsense"), {"Authorization": f"Basic {key}"},
                    {"Authorization": "Bearer "}):
        refused = client.get("/api/v1/jobs", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json["error"]["code"] == "unauthorized"
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert client.get("/api/v1/jobs", headers=_bearer(key)).status_code == 200
    assert client.get("/api/v1/jobs", headers={"Authorization": f"bearer {key}"}).status_code == 200


def test_a_revoked_key_is_refused_at_once(keys_app, new_key):
    key_id, key = new_key("alice")
    client = keys_app.test_client()
    assert client.get("/api/v1/jobs", headers=_bearer(key)).status_code == 200

    with keys_app.extensions["deepfake.db"]["session_factory"]() as session:
        key_store.revoke_key(session=session, key_id=key_id)
        session.commit()

    assert client.get("/api/v1/jobs", headers=_bearer(key)).status_code == 401


def test_every_route_needs_a_key_except_the_open_ones(keys_app):
    client = keys_app.test_client()
    values = {"job_id": str(uuid.uuid4()), "batch_id": str(uuid.uuid4()), "name": ARTIFACT, "action": "cancel",
              "filename": "style.css"}
    answered = set()
    for rule, method in _routes(keys_app):
        response = client.open(_route_path(rule, values), method=method)
        if rule.endpoint in OPEN_ENDPOINTS:
            answered.add(rule.endpoint)
            continue
        if rule.rule.startswith("/api/"):
            assert response.status_code == 401, (method, rule.rule, response.status_code)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 302, (method, rule.rule, response.status_code)
            assert response.headers["Location"].startswith("/login?next=")
    for endpoint, path in OPEN_PATHS.items():
        assert client.get(path).status_code in (200, 503), endpoint  # /readyz: 503 without a live worker
    assert answered >= set(OPEN_PATHS)


def test_another_owners_ids_answer_404_on_every_route(keys_app, new_key, alice_work, session_factory):
    _, bob = new_key("bob")
    client = keys_app.test_client()
    assert _login(client, bob).status_code == 303
    token = page_csrf_token(client, "/")
    values = {"job_id": alice_work["done"], "batch_id": alice_work["batch"], "name": ARTIFACT, "action": "cancel"}
    checked = 0
    for rule, method in _routes(keys_app):
        if not {"job_id", "batch_id"} & set(rule.arguments):
            continue
        data = {"csrf_token": token} if method == "POST" else None
        response = client.open(_route_path(rule, values), method=method, data=data)
        assert response.status_code == 404, (method, rule.rule, response.status_code)
        checked += 1
    assert checked >= 10

    assert client.post(f"/api/v1/jobs/{alice_work['queued']}/cancel", headers=_bearer(bob)).status_code == 404
    with session_factory() as session:
        for job_id, status in ((alice_work["done"], "succeeded"), (alice_work["queued"], "queued")):
            assert job_store.get_job(session=session, owner="alice", job_id=job_id).status == status
        assert batch_store.get_batch(session=session, owner="alice", batch_id=alice_work["batch"]) is not None


def test_with_two_keys_each_owner_sees_only_its_own_work(keys_app, new_key, alice_work):
    _, alice = new_key("alice")
    _, bob = new_key("bob")
    client = keys_app.test_client()

    alice_jobs = client.get("/api/v1/jobs", headers=_bearer(alice)).json["jobs"]
    assert {job["id"] for job in alice_jobs} == {alice_work["done"], alice_work["queued"]}
    assert client.get("/api/v1/jobs", headers=_bearer(bob)).json["jobs"] == []
    assert [b["id"] for b in client.get("/api/v1/batches", headers=_bearer(alice)).json["batches"]] == \
        [alice_work["batch"]]
    assert client.get("/api/v1/batches", headers=_bearer(bob)).json["batches"] == []
    done = alice_work["done"]
    for path in (f"/api/v1/jobs/{done}", f"/api/v1/jobs/{done}/artifacts/{ARTIFACT}",
                 f"/api/v1/batches/{alice_work['batch']}"):
        assert client.get(path, headers=_bearer(alice)).status_code == 200, path
        assert client.get(path, headers=_bearer(bob)).status_code == 404, path
    assert client.delete(f"/api/v1/jobs/{done}", headers=_bearer(bob)).status_code == 404
    assert client.delete(f"/api/v1/jobs/{done}", headers=_bearer(alice)).status_code == 200


def test_an_admin_key_sees_and_acts_on_every_owners_work_and_owns_what_it_submits(
        keys_app, new_key, alice_work, video_clip, queued_tasks, session_factory):
    _, admin = new_key("ops", admin=True)
    client = keys_app.test_client()
    with open(video_clip, "rb") as video:
        submitted = client.post("/api/v1/jobs", data={"video": (video, "mine.mp4")}, headers=_bearer(admin))
    assert submitted.status_code == 202
    created = client.post("/api/v1/batches", json={"name": "ops-batch", "options": {}}, headers=_bearer(admin))
    assert created.status_code == 201

    listed = {job["id"] for job in client.get("/api/v1/jobs", headers=_bearer(admin)).json["jobs"]}
    assert listed == {alice_work["done"], alice_work["queued"], submitted.json["id"]}
    batches = {b["id"] for b in client.get("/api/v1/batches", headers=_bearer(admin)).json["batches"]}
    assert batches == {alice_work["batch"], created.json["id"]}
    assert client.get(f"/api/v1/jobs/{alice_work['done']}/artifacts/{ARTIFACT}", headers=_bearer(admin)).status_code == 200
    assert client.get(f"/api/v1/batches/{alice_work['batch']}", headers=_bearer(admin)).status_code == 200
    assert client.post(f"/api/v1/jobs/{alice_work['queued']}/cancel", headers=_bearer(admin)).json["status"] == "cancelled"
    assert client.delete(f"/api/v1/batches/{alice_work['batch']}", headers=_bearer(admin)).status_code == 200
    with session_factory() as session:
        assert job_store.get_job(session=session, owner="ops", job_id=submitted.json["id"]) is not None
        assert batch_store.get_batch(session=session, owner="ops", batch_id=created.json["id"]) is not None
        assert batch_store.get_batch(session=session, owner=None, batch_id=alice_work["batch"]) is None


def test_pages_redirect_to_the_login_page_and_work_after_logging_in(keys_app, new_key, alice_work):
    _, alice = new_key("alice")
    client = keys_app.test_client()

    redirected = client.get("/jobs?status=succeeded")
    assert redirected.status_code == 302 and redirected.headers["Location"] == "/login?next=/jobs?status%3Dsucceeded"
    form = client.get("/login?next=/jobs").get_data(as_text=True)
    assert 'name="api_key"' in form and 'value="/jobs"' in form
    wrong = _login(client, alice[:-1] + "!", next_path="/jobs")
    assert wrong.status_code == 401 and "not valid" in wrong.get_data(as_text=True)
    assert client.get("/jobs").status_code == 302

    logged_in = _login(client, alice, next_path="/jobs")
    assert logged_in.status_code == 303 and logged_in.headers["Location"] == "/jobs"
    cookie = next(c for c in logged_in.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/jobs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "alice-done.mp4" in html and "Log out" in html
    assert client.get(f"/jobs/{alice_work['done']}").status_code == 200
    assert client.get(f"/api/v1/jobs/{alice_work['done']}").status_code == 200  # the pages' scripts use the API

    logout = client.post("/logout", data={"csrf_token": page_csrf_token(client, "/jobs")})
    assert logout.status_code == 303
    assert client.get("/jobs").status_code == 302
    assert client.get(f"/api/v1/jobs/{alice_work['done']}").status_code == 401


def test_the_session_cookie_is_secure_when_the_request_came_over_https(keys_app, new_key):
    _, alice = new_key("alice")
    for request in ({"headers": {"X-Forwarded-Proto": "https"}}, {"base_url": "https://localhost"}):
        client = keys_app.test_client()
        html = client.get("/login", **request).get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        response = client.post("/login", data={"csrf_token": token, "api_key": alice}, **request)
        cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
        assert response.status_code == 303 and "Secure" in cookie, request


def test_login_needs_the_forms_csrf_token_and_never_redirects_off_site(keys_app, new_key):
    _, alice = new_key("alice")
    client = keys_app.test_client()
    client.get("/login")
    assert client.post("/login", data={"api_key": alice}).status_code == 403
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "jobs"):
        response = _login(client, alice, next_path=target)
        assert response.status_code == 303 and response.headers["Location"] == "/", target


def test_revoking_a_key_ends_its_page_session(keys_app, new_key):
    key_id, alice = new_key("alice")
    client = keys_app.test_client()
    _login(client, alice)
    assert client.get("/jobs").status_code == 200

    with keys_app.extensions["deepfake.db"]["session_factory"]() as session:
        key_store.revoke_key(session=session, key_id=key_id)
        session.commit()

    assert client.get("/jobs").status_code == 302


def test_without_accounts_there_is_no_login_and_everyone_is_the_local_owner(client, make_job, settings):
    job_id = make_job()
    assert settings.auth == "none"
    assert client.get("/login").headers["Location"] == "/"
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200
    assert "Log out" not in client.get("/jobs").get_data(as_text=True)


def test_the_openapi_document_states_the_bearer_scheme_and_which_operations_are_open(keys_app):
    document = keys_app.test_client().get("/api/v1/openapi.json").json

    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert document["security"] == [{"bearerAuth": []}]
    open_paths = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == []:
                open_paths.add(path)
                assert "401" not in operation["responses"]
            else:
                assert "security" not in operation and "401" in operation["responses"], (method, path)
    assert open_paths == {"/healthz", "/readyz", "/api/v1/openapi.json"}


def test_an_admin_s_job_list_says_whose_each_job_is(keys_app, new_key, alice_work):
    _, admin = new_key("ops", admin=True)
    _, alice = new_key("alice")
    as_admin, as_alice = keys_app.test_client(), keys_app.test_client()
    _login(as_admin, admin)
    _login(as_alice, alice)

    admin_page = as_admin.get("/jobs").get_data(as_text=True)
    alice_page = as_alice.get("/jobs").get_data(as_text=True)

    assert '<th scope="col">Owner</th>' in admin_page and "<td>alice</td>" in admin_page
    assert '<th scope="col">Owner</th>' not in alice_page and "alice-done.mp4" in alice_page
    assert {job["owner"] for job in as_admin.get("/api/v1/jobs").json["jobs"]} == {"alice"}
