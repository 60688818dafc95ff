"""The one settings object, read from the environment in one place and passed in."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from shared import lanes


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def _webhook_secret(env: Mapping[str, str]) -> str | None:
    """WEBHOOK_SECRET, checked at start (a malformed secret fails fast, not at the first delivery)."""
    from shared.webhooks import secret_key

    secret = (env.get("WEBHOOK_SECRET") or "").strip() or None
    if secret is not None:
        secret_key(secret)
    return secret


# AUTH values: the one list (web/auth.py and the serve/web start checks read it).
AUTH_NONE, AUTH_KEYS, AUTH_NONE_ON_NETWORK = "none", "keys", "none-allow-network"
AUTH_MODES = (AUTH_NONE, AUTH_KEYS, AUTH_NONE_ON_NETWORK)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise ValueError(f"environment variable {name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything configurable about the service and the engine.

    Relative paths are taken relative to the working directory, as a user would expect
    from a command-line tool.
    """

    weights_dir: Path = Path("weights")
    data_dir: Path = Path("var")
    database_url: str | None = None
    redis_url: str | None = None
    max_upload_mb: int = 4096
    secret_key: str | None = None
    device: str = "auto"
    owner: str = "local"
    # AUTH: none (no login: every request acts as DEFAULT_OWNER; loopback binds only), keys (API keys and a
    # login page), or none-allow-network (no login on a non-loopback bind, an explicit choice). See web/auth.py.
    auth: str = "none"
    # SESSION_COOKIE_SECURE: auto (Secure when the request came over https, directly or per X-Forwarded-Proto),
    # true or false.
    session_cookie_secure: str = "auto"
    # WORKER_QUEUES: the queues a worker consumes (shared.lanes: interactive + batch by default; `deepfake
    # worker` adds the gpu lane first on a GPU); the first one's base names the lane queues the web sends to.
    worker_queues: tuple[str, ...] = lanes.default_worker_queues()
    job_max_attempts: int = 3
    heartbeat_timeout_s: int = 120
    # REQUEUE_LOST_AFTER_S: a queued job whose task message is in no broker queue this long after it was
    # sent (broker data lost, web killed between commit and send) is sent again by the reaper.
    requeue_lost_after_s: int = 60
    # GPU_LANE_MIN_DURATION_S: a video at least this long goes to the gpu lane while a GPU worker is alive
    # (ten minutes: about where a CPU worker's run time starts to be counted in tens of minutes).
    gpu_lane_min_duration_s: int = 600
    # GPU_JOBS: analyses a GPU worker runs at once, each in its own process and CUDA context, so the GPU
    # works on one video while another is between batches (demuxing, tracking, scoring on the host).
    gpu_jobs: int = 2
    # UPLOAD_RETENTION_DAYS: how long an upload is kept after its job ended; 0 = removed when it ends.
    upload_retention_days: int = 0
    # STORAGE: local (DATA_DIR is the storage: one machine, or a folder shared at the same path) or s3
    # (an S3-compatible bucket: S3_BUCKET, S3_PREFIX, S3_ENDPOINT_URL, S3_REGION, S3_ACCESS_KEY_ID,
    # S3_SECRET_ACCESS_KEY; without the keys boto3's own credential chain is used). See shared/storage.py.
    storage: str = "local"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    # WEB_ARTIFACT_CACHE_MB: with STORAGE=s3 the web keeps the artifacts it fetched to serve (pictures, previews)
    # in DATA_DIR/cache/fetched up to this size, least recently served removed first; 0 = only the one being served.
    web_artifact_cache_mb: int = 1024
    # RESUME_CHECKPOINTS: record a running job's trunk features in the store every few hundred crops, so a
    # job whose worker stops resumes there on any worker (0 = off; see shared/model/resume.py).
    resume_checkpoints: bool = True
    resume_checkpoint_crops: int = 256  # RESUME_CHECKPOINT_CROPS: crops per recorded chunk
    # RESULT_RETENTION_DAYS: ended jobs (result, timeline, pictures, upload) are deleted this long after they
    # ended; 0 = kept until deleted by their owner.
    result_retention_days: int = 0
    # FAILED_BATCH_UPLOAD_RETENTION_DAYS: a failed batch item keeps its upload this long, for "retry failed".
    failed_batch_upload_retention_days: int = 7
    # BATCH_IMPORT_ROOT: a server folder whose videos batches may import by path (unset: no import).
    batch_import_root: Path | None = None
    model_cache_override: Path | None = None  # MODEL_CACHE_DIR; see model_cache_dir
    # MODEL_CACHE_KEEP_DAYS: cached models unused this long are removed when a worker starts; 0 = never.
    model_cache_keep_days: int = 30
    engine_threads: int = 0  # ENGINE_THREADS: cores one analysing process may use; 0 = its fair share
    engine_processes: int = 1  # ENGINE_PROCESSES: analysing processes sharing this machine's cores
    # Probe-time limits on a video (shared.media.limits; 0 = no limit). Pixels, not a side, so portrait and
    # landscape count alike: 4096×2160 (DCI 4K; UHD 3840×2160 too) passes, 5K and 8K do not. An 8K frame is
    # 100 MB as RGB; measured peaks in docs/ARCHITECTURE.md (Limits): up to 1.43 GB at 4K, 1.93 GB at 8K.
    max_video_pixels: int = 4096 * 2160  # MAX_VIDEO_PIXELS
    max_video_duration_s: int = 4 * 3600  # MAX_VIDEO_DURATION_S
    max_video_fps: int = 240  # MAX_VIDEO_FPS: slow-motion phone video is 240
    max_video_streams: int = 16  # MAX_VIDEO_STREAMS: video + a few audio and subtitle tracks
    # Per-owner limits of the API's writes (web.limits; 0 = off). The rate is counted in Redis: no Redis, no limit.
    # RATE_LIMIT_PER_MINUTE: job submissions, batch creations and batch items together. 600 (10 a second) stops a
    # flood without slowing a batch of hundreds of small files: `deepfake batch` and the batch page upload one
    # request per file and wait out a 429 (cli/busy.py), so a lower limit costs them time, not files.
    rate_limit_per_minute: int = 600
    max_active_jobs_per_owner: int = 1000  # MAX_ACTIVE_JOBS_PER_OWNER: queued + running; a batch of hundreds fits
    max_storage_mb_per_owner: int = 100 * 1024  # MAX_STORAGE_MB_PER_OWNER: uploads still stored (web.limits)
    # CLIENT_READ_TIMEOUT_S: the web server gives up on a client that sends nothing for this long (a stalled
    # upload), so it cannot hold a request thread forever; 0 = wait forever.
    client_read_timeout_s: int = 60
    web_max_threads: int = 64  # WEB_MAX_THREADS: connections `serve`'s web server handles at once
    # Completion webhooks (shared/webhooks.py, worker/webhooks.py). WEBHOOK_SECRET: `whsec_` + base64 (the Standard
    # Webhooks format); unset = webhooks refused at submission. WEBHOOK_ALLOW_PRIVATE=1 lets them call loopback,
    # private and link-local addresses (a receiver on the operator's own network).
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_allow_private: bool = False
    # WEBHOOK_RETRY_BASE_S, doubling per attempt up to WEBHOOK_MAX_ATTEMPTS: 5 s and 15 attempts put the last
    # one about 23 hours after the first (5 s x (2^14 - 1)), so a receiver down for most of a day still gets it.
    webhook_retry_base_s: int = 5
    webhook_max_attempts: int = 15
    webhook_timeout_s: int = 10  # WEBHOOK_TIMEOUT_S: connect and read, per attempt
    # WEBHOOK_BATCH_SETTLE_S: a batch's webhook waits until every item ended and none was added for this long
    # (items arrive one request each; an early item may end before the next one is uploaded).
    webhook_batch_settle_s: int = 30

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        queues = tuple(q for q in env.get("WORKER_QUEUES", "").split(",") if q)
        return cls(
            weights_dir=Path(env.get("WEIGHTS_DIR", "weights")),
            data_dir=Path(env.get("DATA_DIR", "var")),
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            max_upload_mb=_int(env, "MAX_UPLOAD_MB", 4096),
            secret_key=env.get("SECRET_KEY") or None,
            device=env.get("DEVICE", "auto"),
            owner=env.get("DEFAULT_OWNER", "local"),
            auth=_choice(env, "AUTH", AUTH_MODES, "none"),
            session_cookie_secure=_choice(env, "SESSION_COOKIE_SECURE", ("auto", "true", "false"), "auto"),
            worker_queues=queues or lanes.default_worker_queues(),
            job_max_attempts=_int(env, "JOB_MAX_ATTEMPTS", 3),
            heartbeat_timeout_s=_int(env, "HEARTBEAT_TIMEOUT_S", 120),
            requeue_lost_after_s=_int(env, "REQUEUE_LOST_AFTER_S", 60),
            gpu_lane_min_duration_s=_int(env, "GPU_LANE_MIN_DURATION_S", 600),
            gpu_jobs=max(1, _int(env, "GPU_JOBS", 2)),
            upload_retention_days=max(0, _int(env, "UPLOAD_RETENTION_DAYS", 0)),
            storage=(env.get("STORAGE") or "local").strip().lower(),
            s3_bucket=env.get("S3_BUCKET") or None,
            s3_prefix=env.get("S3_PREFIX", ""),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            s3_region=env.get("S3_REGION") or None,
            s3_access_key_id=env.get("S3_ACCESS_KEY_ID") or None,
            s3_secret_access_key=env.get("S3_SECRET_ACCESS_KEY") or None,
            web_artifact_cache_mb=max(0, _int(env, "WEB_ARTIFACT_CACHE_MB", 1024)),
            result_retention_days=max(0, _int(env, "RESULT_RETENTION_DAYS", 0)),
            resume_checkpoints=_int(env, "RESUME_CHECKPOINTS", 1) != 0,
            resume_checkpoint_crops=max(1, _int(env, "RESUME_CHECKPOINT_CROPS", 256)),
            failed_batch_upload_retention_days=max(0, _int(env, "FAILED_BATCH_UPLOAD_RETENTION_DAYS", 7)),
            batch_import_root=Path(env["BATCH_IMPORT_ROOT"]) if env.get("BATCH_IMPORT_ROOT") else None,
            model_cache_override=Path(env["MODEL_CACHE_DIR"]) if env.get("MODEL_CACHE_DIR") else None,
            model_cache_keep_days=max(0, _int(env, "MODEL_CACHE_KEEP_DAYS", 30)),
            engine_threads=_int(env, "ENGINE_THREADS", 0),
            engine_processes=max(1, _int(env, "ENGINE_PROCESSES", 1)),
            max_video_pixels=max(0, _int(env, "MAX_VIDEO_PIXELS", 4096 * 2160)),
            max_video_duration_s=max(0, _int(env, "MAX_VIDEO_DURATION_S", 4 * 3600)),
            max_video_fps=max(0, _int(env, "MAX_VIDEO_FPS", 240)),
            max_video_streams=max(0, _int(env, "MAX_VIDEO_STREAMS", 16)),
            rate_limit_per_minute=max(0, _int(env, "RATE_LIMIT_PER_MINUTE", 600)),
            max_active_jobs_per_owner=max(0, _int(env, "MAX_ACTIVE_JOBS_PER_OWNER", 1000)),
            max_storage_mb_per_owner=max(0, _int(env, "MAX_STORAGE_MB_PER_OWNER", 100 * 1024)),
            client_read_timeout_s=max(0, _int(env, "CLIENT_READ_TIMEOUT_S", 60)),
            web_max_threads=max(1, _int(env, "WEB_MAX_THREADS", 64)),
            webhook_secret=_webhook_secret(env),
            webhook_allow_private=_int(env, "WEBHOOK_ALLOW_PRIVATE", 0) != 0,
            webhook_retry_base_s=max(0, _int(env, "WEBHOOK_RETRY_BASE_S", 5)),
            webhook_max_attempts=max(1, _int(env, "WEBHOOK_MAX_ATTEMPTS", 15)),
            webhook_timeout_s=max(1, _int(env, "WEBHOOK_TIMEOUT_S", 10)),
            webhook_batch_settle_s=max(0, _int(env, "WEBHOOK_BATCH_SETTLE_S", 30)),
        )

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def model_cache_dir(self) -> Path:
        """Where converted and compiled models are kept (MODEL_CACHE_DIR, default DATA_DIR/cache/models).

        Writable, unlike a weights folder mounted read-only, so each model is converted once, not once
        per process.
        """
        return self.model_cache_override or self.data_dir / "cache" / "models"

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL, or the embedded SQLite file under DATA_DIR."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'deepfake.db').resolve()}"
