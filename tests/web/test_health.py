"""/healthz always answers; /readyz checks the database and the broker for real."""
from __future__ import annotations

from dataclasses import replace

from tests.web.conftest import build_app


def test_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_when_database_and_redis_answer(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_names_redis_when_it_is_unreachable(settings):
    app = build_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["error"]["code"] == "not_ready"
    assert response.json["error"]["down"] == ["broker"]
    assert response.json["checks"]["database"] == "ok"


def test_readyz_names_the_database_when_it_is_unreachable(settings):
    app = build_app(replace(settings, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none"))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["error"]["down"] == ["database"]
    assert "database" in response.json["error"]["message"]
