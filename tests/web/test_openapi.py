"""The OpenAPI document is generated from the routes and covers every one of them."""
from __future__ import annotations

import uuid

import pytest
from flask import Blueprint

from web import create_app
from web.openapi import build_document, is_documented, openapi_path
from web.submission import API_OPTIONS


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_api_and_health_route_and_method_is_documented(app, client):
    document = client.get("/api/v1/openapi.json").json
    rules = [r for r in app.url_map.iter_rules() if is_documented(r.rule)]

    assert document["openapi"] == "3.1.0"
    assert {r.rule for r in rules} >= {"/healthz", "/readyz", "/api/v1/jobs", "/api/v1/jobs/<job_id>",
                                       "/api/v1/openapi.json"}
    for rule in rules:
        item = document["paths"][openapi_path(rule.rule)]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = item[method.lower()]
            assert operation["summary"] and operation["responses"]
            path_params = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert path_params == set(rule.arguments)


def test_every_reference_resolves(client):
    document = client.get("/api/v1/openapi.json").json
    schemas = document["components"]["schemas"]

    refs = set(_refs(document))

    assert refs
    assert {ref.rsplit("/", 1)[-1] for ref in refs} <= set(schemas)


def test_the_upload_body_lists_exactly_the_accepted_engine_settings(client):
    operation = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/jobs"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]

    assert set(schema["properties"]) == {"video", "webhook_url", *API_OPTIONS}
    assert schema["required"] == ["video"]
    assert set(operation["responses"]) >= {"202", "400", "413", "415", "422", "500"}


def test_a_new_route_appears_without_editing_any_document(settings):
    app = create_app(settings)
    extra = Blueprint("extra", __name__, url_prefix="/api/v1")

    from web.openapi import operation

    @extra.get("/things/<int:thing_id>")
    @operation(responses={200: "Health"})
    def get_thing(thing_id: int):
        """Read one thing."""
        return {}

    app.register_blueprint(extra)

    paths = build_document(app)["paths"]

    assert paths["/api/v1/things/{thing_id}"]["get"]["summary"] == "Read one thing."
    app.extensions["deepfake.db"]["engine"].dispose()


def test_an_undeclared_api_route_is_an_error_not_a_silent_gap(settings):
    app = create_app(settings)
    app.add_url_rule("/api/v1/undeclared", "undeclared", lambda: "")

    with pytest.raises(LookupError, match="undeclared"):
        build_document(app)
    app.extensions["deepfake.db"]["engine"].dispose()


def test_every_write_documents_the_403_a_cross_site_browser_gets(client):
    """test_api_fuzz holds answers to the document; a cross-site write's 403 was the one it could not reach."""
    document = client.get("/api/v1/openapi.json").json
    writes = [(path, method) for path, item in document["paths"].items() for method in item
              if method in ("post", "put", "patch", "delete")]

    assert writes
    for path, method in writes:
        url = path.replace("{job_id}", str(uuid.uuid4())).replace("{batch_id}", str(uuid.uuid4()))
        response = client.open(url, method=method.upper(), headers={"Origin": "https://elsewhere.example"})
        assert response.status_code == 403 and response.json["error"]["code"] == "cross_origin_request", url
        assert "403" in document["paths"][path][method]["responses"], (method, path)
