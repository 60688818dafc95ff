"""A thread in each worker's main process that tells Redis the worker is alive (see shared.liveness).

Started when the worker is ready (it consumes from then on), stopped at shutdown, when the
worker also removes itself so the web's /readyz drops at once. A failed beat is logged and
retried on the next tick: a Redis outage must not take the worker down. Each beat carries the
worker's `WorkerReport`, found once at start by the engine's own file rule (no model is loaded,
and CUDA is not initialised: the prefork pool's parent must never do that).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from shared import lanes, liveness
from shared.gpus import resolved_device
from shared.options import installed_checkpoints
from shared.settings import Settings

log = logging.getLogger(__name__)
REDIS_TIMEOUT_S = 2.0


def describe_worker(settings: Settings) -> liveness.WorkerReport:
    """The device, the face detector `face_detector=auto` resolves to and the checkpoints of this worker."""
    # The engine's own choice (build_face_detector's search), so the report cannot drift from what jobs run.
    from shared.model.faces.detector import find_retinaface_weights

    device = resolved_device(settings.device)
    weights_dir = Path(settings.weights_dir)
    checkpoints = tuple(installed_checkpoints(weights_dir) or ())
    found = find_retinaface_weights(weights_dir, device=device, backbone=None, registry=None)
    if found is None:
        note = (f"no RetinaFace weights in {weights_dir} on this worker: faces are found with OpenCV's Haar "
                "fallback, which misses profile and small faces (deepfake weights fetch retinaface-mobilenet0.25)")
        return liveness.WorkerReport(device=device, detector="opencv", detector_weights=None, detector_note=note,
                                     checkpoints=checkpoints)
    path, _, backbone = found
    return liveness.WorkerReport(device=device, detector=f"retinaface-{backbone}", detector_weights=path.name,
                                 detector_note=None, checkpoints=checkpoints)


class LivenessBeacon:
    """Calls `liveness.beat` every HEARTBEAT_EVERY_S until stopped, with the worker's report (if any)."""

    def __init__(self, *, redis_url: str, worker: str, queues: list[str],
                 report: liveness.WorkerReport | None = None) -> None:
        self.worker, self.queues, self.report = worker, queues, report
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                            socket_timeout=REDIS_TIMEOUT_S)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deepfake-liveness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        try:
            liveness.leave(self._client, worker=self.worker, queues=self.queues)
        except redis.RedisError as exc:
            log.warning("could not remove worker %s from the live workers: %s", self.worker, exc)
        self._client.close()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                liveness.beat(self._client, worker=self.worker, queues=self.queues, report=self.report)
            except redis.RedisError as exc:
                log.warning("liveness heartbeat failed: %s", exc)
            self._stopped.wait(liveness.HEARTBEAT_EVERY_S)


def _report_or_none(settings: Settings) -> liveness.WorkerReport | None:
    try:
        return describe_worker(settings)
    except OSError as exc:  # an unreadable weights folder: beat anyway, /readyz shows this worker as unknown
        log.warning("could not tell what this worker runs (%s): it beats without a report", exc)
        return None


def connect(app: Celery) -> None:
    """Beat while a worker of `app` runs."""

    def start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app or getattr(app, "deepfake_liveness", None) is not None:
            return
        # One sorted set per lane queue it consumes: that is how a worker announces its lanes (the web
        # sends long videos to the gpu lane only while a worker beats there).
        queues = sorted(q for q in app.amqp.queues.consume_from if not lanes.is_front_queue(q))
        queues = queues or list(app.deepfake_settings.worker_queues)
        app.deepfake_liveness = LivenessBeacon(redis_url=app.deepfake_settings.redis_url or "",
                                               worker=sender.hostname, queues=queues,
                                               report=_report_or_none(app.deepfake_settings))
        app.deepfake_liveness.start()

    def stop(**_: Any) -> None:
        beacon = getattr(app, "deepfake_liveness", None)
        if beacon is not None:
            beacon.stop()
            app.deepfake_liveness = None

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
