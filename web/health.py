"""Liveness and readiness: /healthz answers while the process runs, /readyz when the service can analyse.

Ready means: the database answers, the broker answers, at least one worker consuming the web's
queue beat within `shared.liveness.ALIVE_FOR_S`, and a live worker has a checkpoint (`*.pt`/`*.pth`).
What runs is what the live workers report with their heartbeats (`shared.liveness.WorkerReport`: device,
the face detector `auto` resolves to there, checkpoints): in a deployment only the worker machines hold the
weights, and they may differ. Live workers on the Haar fallback give a warning (still ready). Only while no
live worker reports (none alive, or workers from before the report) does /readyz look at the web machine's
own WEIGHTS_DIR, by file name (the web never imports the engine), and it labels that answer so.
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
WEB_MACHINE = "web machine"  # the `source` of an answer read from the web's own WEIGHTS_DIR
HAAR_NOTE = ("no RetinaFace weights in the web machine's WEIGHTS_DIR: faces are found with OpenCV's Haar fallback, "
             "which misses profile and small faces (deepfake weights fetch retinaface-mobilenet0.25)")
Reports = dict[str, liveness.WorkerReport | None]


@bp.get("/healthz")
@operation(responses={200: "Health"}, tag="health")
def healthz() -> Response:
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
@operation(responses={200: "Readiness", 503: "Error"}, tag="health")
def readyz() -> tuple[Response, int]:
    """The database answers, the broker answers, a worker is alive and has a model checkpoint; what each live
    worker runs (device, face detector, checkpoints), with a warning when some use the Haar fallback."""
    broker = check_broker()
    workers, reports = check_workers() if broker == "ok" else ("unknown (broker unreachable)", {})
    checks = {"database": check_database(), "broker": broker, "workers": workers, "model": check_model(reports)}
    running = what_runs(reports)
    down = sorted(name for name, state in checks.items() if state != "ok")
    if not down:
        return jsonify(status="ok", checks=checks, **running), 200
    message = "; ".join(f"{name}: {checks[name]}" for name in down)
    return jsonify(error={"code": "not_ready", "message": message, "down": down}, checks=checks, **running), 503


def what_runs(reports: Reports) -> dict[str, Any]:
    """Each live worker's report, the detector and checkpoints they use together, and warnings."""
    known = {name: report for name, report in reports.items() if report is not None}
    if known:
        detector, checkpoints = workers_detector(known), sorted({c for r in known.values() for c in r.checkpoints})
    else:
        detector, checkpoints = web_machine_detector(), installed_checkpoints(_weights_dir()) or []
    return {"workers": [worker_entry(name, report) for name, report in sorted(reports.items())],
            "detector": detector, "checkpoints": checkpoints, "warnings": readiness_warnings(reports)}


def worker_entry(name: str, report: liveness.WorkerReport | None) -> dict[str, Any]:
    """One live worker as /readyz shows it; "unknown" for a worker that sent no report."""
    if report is None:
        return {"name": name, "device": "unknown", "detector": {"name": "unknown", "weights": []},
                "checkpoints": None}
    return {"name": name, "device": report.device, "detector": _detector(report),
            "checkpoints": list(report.checkpoints)}


def workers_detector(known: dict[str, liveness.WorkerReport]) -> dict[str, Any]:
    """The detector the reporting workers use, or "mixed" when they differ (the per-worker entries say which)."""
    kinds = {(report.detector, report.detector_weights) for report in known.values()}
    if len(kinds) == 1:
        return {**_detector(next(iter(known.values()))), "source": "live workers"}
    return {"name": "mixed", "weights": sorted({w for _, w in kinds if w}), "source": "live workers",
            "note": "the live workers use different face detectors: see `workers`"}


def _detector(report: liveness.WorkerReport) -> dict[str, Any]:
    weights = [report.detector_weights] if report.detector_weights else []
    detector: dict[str, Any] = {"name": report.detector, "weights": weights}
    return {**detector, "note": report.detector_note} if report.detector_note else detector


def web_machine_detector() -> dict[str, Any]:
    """The fallback label while no live worker reports: what `auto` would use with the web's own WEIGHTS_DIR."""
    files = installed_detector_files(_weights_dir())
    if files:
        return {"name": "retinaface", "weights": files, "source": WEB_MACHINE}
    return {"name": "opencv", "weights": [], "note": HAAR_NOTE, "source": WEB_MACHINE}


def readiness_warnings(reports: Reports) -> list[str]:
    """Live workers on the Haar fallback, and live workers that did not say what they run."""
    warnings = []
    fallback = sorted(name for name, report in reports.items() if report is not None and report.is_fallback)
    if fallback:
        warnings.append(f"{len(fallback)} of {len(reports)} live workers find faces with OpenCV's Haar fallback "
                        f"(no RetinaFace weights there), which misses profile and small faces: {', '.join(fallback)}; "
                        "run `deepfake weights fetch retinaface-mobilenet0.25` on their machines")
    unknown = sorted(name for name, report in reports.items() if report is None)
    if unknown:
        warnings.append(f"live workers that did not report their detector, device and checkpoints (an older "
                        f"version): {', '.join(unknown)}")
    return warnings


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


def check_workers() -> tuple[str, Reports]:
    """"ok" and each live worker's report (None: it sent none), or why no worker consuming the web's queue
    counts as alive."""
    queue = current_app.config["ANALYSIS_QUEUE"]
    client = _broker_client()
    try:
        alive = liveness.alive_workers(client, queue=queue)
        reports = liveness.worker_reports(client, workers=alive)
    except redis.RedisError as exc:
        return f"unknown ({type(exc).__name__})", {}
    finally:
        client.close()
    if not alive:
        return (f"no worker alive on queue {queue!r} (none beat within {liveness.ALIVE_FOR_S:.0f} s): "
                "jobs would wait until one starts"), {}
    return "ok", reports


def check_model(reports: Reports) -> str:
    """"ok", or that no live worker has a checkpoint to load. While no live worker reports, the web machine's
    own WEIGHTS_DIR stands in (as it did before workers reported)."""
    known = [report for report in reports.values() if report is not None]
    if any(report.checkpoints for report in known):
        return "ok"
    if known and len(known) == len(reports):
        return "no live worker has a model checkpoint (*.pt, *.pth) in its WEIGHTS_DIR: see weights/README.md"
    folder = _weights_dir()
    if installed_checkpoints(folder):
        return "ok"
    return (f"no model checkpoint (*.pt, *.pth) in {folder} on the web machine, and no live worker reported "
            "its own: see weights/README.md")


def _weights_dir() -> Path:
    return Path(current_settings().weights_dir)
