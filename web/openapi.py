"""The OpenAPI 3.1 document, generated from the app's URL map and the views' own declarations.

Each view states its contract with `@operation(...)` next to its code; paths, methods and path
parameters come from the routing table, so a new route cannot be left out of the document.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from flask import Flask

from web import schemas
from web.auth import OPEN_ENDPOINTS
from web.security import STATE_CHANGING

F = TypeVar("F", bound=Callable[..., Any])
DOCUMENTED_PREFIXES = ("/api/v1/",)
DOCUMENTED_PATHS = ("/healthz", "/readyz")
# web/auth.py: with AUTH=keys every operation but the open ones needs `Authorization: Bearer <key>`.
BEARER_AUTH = {"type": "http", "scheme": "bearer",
               "description": "An API key from `deepfake keys create` (ignored when the server runs with AUTH=none)."}
UNAUTHORIZED_RESPONSE = {
    "description": "No API key, or one that is unknown or revoked (WWW-Authenticate: Bearer)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
# web/security.py: a browser's POST or DELETE from another site's page (Origin not this server) is refused.
CROSS_ORIGIN_RESPONSE = {
    "description": "A write a browser sent from another site's page (cross_origin_request)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_STATUS_TEXT = {200: "OK", 202: "Accepted", 400: "Bad request",
                403: "Forbidden: cross_origin_request (a browser's write from another site's page) or as described",
                404: "Not found", 405: "Method not allowed",
                408: "The upload stalled (upload_timeout): nothing arrived for CLIENT_READ_TIMEOUT_S",
                413: "Upload too large, or over the owner's storage quota (storage_quota_exceeded)",
                415: "Not a video", 422: "Unprocessable input", 429: "Too many requests: rate_limited (with "
                "Retry-After) or too_many_active_jobs", 500: "Internal error", 503: "Unavailable"}


@dataclass(frozen=True)
class Param:
    """A query or path parameter."""

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    location: str = "query"
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "in": self.location, "required": self.required or self.location == "path",
                "description": self.description, "schema": self.schema}


def operation(*, responses: dict[int, str | None], params: tuple[Param, ...] = (),
              body: dict[str, Any] | None = None, tag: str = "jobs", media_type: str = "application/json") -> Callable[[F], F]:
    """Attach the OpenAPI facts the routing table cannot know: parameters, body, response schemas.

    `responses` maps a status to a component schema name (None: no JSON schema, e.g. a file).
    Summary and description come from the view's docstring.
    """
    def attach(view: F) -> F:
        view.__openapi__ = {"responses": responses, "params": params, "body": body, "tag": tag,
                            "media_type": media_type}
        return view

    return attach


def build_document(app: Flask) -> dict[str, Any]:
    """The whole OpenAPI document for `app`."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not is_documented(rule.rule):
            continue
        view = app.view_functions[rule.endpoint]
        item = paths.setdefault(openapi_path(rule.rule), {})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            item[method.lower()] = op = _operation(rule.endpoint, rule.arguments, view)
            if method in STATE_CHANGING:
                op["responses"].setdefault("403", CROSS_ORIGIN_RESPONSE)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Deepfake detection service", "version": "1",
                 "description": "Upload a video, poll the job, read the verdict and its timeline."},
        "paths": paths,
        "components": {"schemas": schemas.COMPONENTS, "securitySchemes": {"bearerAuth": BEARER_AUTH}},
        # Every operation needs a key unless it says `security: []` (health checks, this document).
        "security": [{"bearerAuth": []}],
    }


def is_documented(path: str) -> bool:
    """Whether a rule belongs in the API document (the API and the health checks)."""
    return path.startswith(DOCUMENTED_PREFIXES) or path in DOCUMENTED_PATHS


def openapi_path(rule: str) -> str:
    """`/jobs/<job_id>` → `/jobs/{job_id}`."""
    return _RULE_ARG.sub(r"{\1}", rule)


def _operation(endpoint: str, arguments: set[str], view: Callable[..., Any]) -> dict[str, Any]:
    spec = getattr(view, "__openapi__", None)
    if spec is None:
        raise LookupError(f"view {endpoint!r} has no @operation declaration")
    summary, _, description = (view.__doc__ or endpoint).strip().partition("\n")
    op: dict[str, Any] = {"operationId": endpoint.replace(".", "_"), "tags": [spec["tag"]],
                          "summary": summary.strip(), "parameters": _parameters(arguments, spec["params"]),
                          "responses": _responses(spec["responses"], spec["media_type"],
                                                  uses_database=spec["tag"] not in ("meta", "health"))}
    if endpoint in OPEN_ENDPOINTS:
        op["security"] = []
    else:
        op["responses"]["401"] = UNAUTHORIZED_RESPONSE
    if description.strip():
        op["description"] = " ".join(description.split())
    if spec["body"]:
        op["requestBody"] = spec["body"]
    return op


def _parameters(arguments: set[str], params: tuple[Param, ...]) -> list[dict[str, Any]]:
    declared = {p.name: p for p in params}
    path_params = [declared.get(name, Param(name, name, location="path")) for name in sorted(arguments)]
    query_params = [p for p in params if p.location != "path"]
    return [p.to_dict() for p in (*path_params, *query_params)]


def _responses(responses: dict[int, str | None], media_type: str, *, uses_database: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, schema_name in sorted(responses.items()):
        response: dict[str, Any] = {"description": _STATUS_TEXT.get(status, str(status))}
        if schema_name:
            response["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}
        elif status < 300:
            response["content"] = {media_type: {"schema": {"type": "string", "format": "binary"}}}
        out[str(status)] = response
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    out.setdefault("500", {"description": _STATUS_TEXT[500], "content": error})
    if uses_database:  # web/errors.py: an unreachable database is a retryable 503 on every such endpoint
        out.setdefault("503", {"description": "Database unavailable; retry after the Retry-After seconds",
                               "content": error})
    return out
