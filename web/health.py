"""Liveness and readiness: /healthz answers while the process runs, /readyz when the service can analyse.

Ready means: the database answers, the broker answers, at least one worker consuming the web's
queue beat within `shared.liveness.ALIVE_FOR_S`, and WEIGHTS_DIR holds a checkpoint (`*.pt`/`*.pth`; the
web never imports the engine, so it only looks for the files the engine would load). Either way /readyz
also says which face detector `auto` will use (RetinaFace when its weights are installed, else the OpenCV
Haar fallback) and which checkpoints a job may choose.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from shared import liveness
from shared.options import installed_checkpoints, installed_detector_files
from web.context import current_settings
from web.db import get_engine
from web.openapi import operation

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 1.0
HAAR_NOTE = ("no RetinaFace weights in WEIGHTS_DIR: faces are found with OpenCV's Haar fallback, which misses "
             "profile and small faces (deepfake weights fetch retinaface-mobilenet0.25)")


@bp.get("/healthz")
@operation(responses={200: "Health"}, tag="health")
def healthz() -> Response:
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
@operation(responses={200: "Readiness", 503: "Error"}, tag="health")
def readyz() -> tuple[Response, int]:
    """The database answers, the broker answers, a worker is alive and a model checkpoint is installed."""
    broker = check_broker()
    checks = {"database": check_database(), "broker": broker,
              "workers": check_workers() if broker == "ok" else "unknown (broker unreachable)",
              "model": check_model()}
    installed = installed_weights()
    down = sorted(name for name, state in checks.items() if state != "ok")
    if not down:
        return jsonify(status="ok", checks=checks, **installed), 200
    message = "; ".join(f"{name}: {checks[name]}" for name in down)
    return jsonify(error={"code": "not_ready", "message": message, "down": down}, checks=checks, **installed), 503


def installed_weights() -> dict[str, Any]:
    """The face detector `face_detector=auto` will use and the checkpoints a job may choose (file names)."""
    folder = Path(current_settings().weights_dir)
    files = installed_detector_files(folder)
    detector = {"name": "retinaface", "weights": files} if files else {"name": "opencv", "weights": [], "note": HAAR_NOTE}
    return {"detector": detector, "checkpoints": installed_checkpoints(folder) or []}


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
    client = _broker_client()
    try:
        client.ping()
    except redis.RedisError as exc:
        log.warning("readiness: broker unreachable: %s", exc)
        return f"unreachable ({type(exc).__name__})"
    finally:
        client.close()
    return "ok"


def _broker_client() -> redis.Redis:
    url = current_settings().redis_url or ""
    return redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S)


def check_workers() -> str:
    """"ok", or that no worker consuming the web's queue sent a heartbeat lately."""
    queue = current_app.config["ANALYSIS_QUEUE"]
    client = _broker_client()
    try:
        alive = liveness.alive_workers(client, queue=queue)
    except redis.RedisError as exc:
        return f"unknown ({type(exc).__name__})"
    finally:
        client.close()
    if not alive:
        return (f"no worker alive on queue {queue!r} (none beat within {liveness.ALIVE_FOR_S:.0f} s): "
                "jobs would wait until one starts")
    return "ok"


def check_model() -> str:
    """"ok", or that WEIGHTS_DIR holds no checkpoint for the workers to load."""
    folder = Path(current_settings().weights_dir)
    if installed_checkpoints(folder):
        return "ok"
    return f"no model checkpoint (*.pt, *.pth) in {folder}: see weights/README.md"
