"""Liveness and readiness: /healthz answers while the process runs, /readyz when its dependencies do."""
from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from web.context import current_settings
from web.db import get_engine
from web.openapi import operation

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 1.0


@bp.get("/healthz")
@operation(responses={200: "Health"}, tag="health")
def healthz() -> Response:
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
@operation(responses={200: "Readiness", 503: "Error"}, tag="health")
def readyz() -> tuple[Response, int]:
    """The database answers `SELECT 1` and the broker answers PING."""
    checks = {"database": check_database(), "broker": check_broker()}
    down = sorted(name for name, state in checks.items() if state != "ok")
    if not down:
        return jsonify(status="ok", checks=checks), 200
    message = "; ".join(f"{name}: {checks[name]}" for name in down)
    return jsonify(error={"code": "not_ready", "message": message, "down": down}, checks=checks), 503


def check_database() -> str:
    """"ok", or why `SELECT 1` failed."""
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("readiness: database unreachable: %s", exc)
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def check_broker() -> str:
    """"ok", or why Redis did not answer PING."""
    url = current_settings().redis_url
    if not url:
        return "not configured (REDIS_URL is not set)"
    client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S)
    try:
        client.ping()
    except redis.RedisError as exc:
        log.warning("readiness: broker unreachable: %s", exc)
        return f"unreachable ({type(exc).__name__})"
    finally:
        client.close()
    return "ok"
