"""SQLAlchemy 2 models of the job service: jobs, their partial timeline, their artifacts.

Times are stored as UTC. SQLite keeps no time zone, so `UTCDateTime` stores naive UTC there
and hands back aware datetimes on every backend.
"""
from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JobStatus(str, enum.Enum):
    """Queued → running → succeeded | failed | cancelled; terminal states never change."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# The CHECK constraint's SQL list: 'queued', 'running', ... (the migrations keep the literal of their day).
_STATUS_LIST = ", ".join(f"'{status.value}'" for status in JobStatus)


def utcnow() -> datetime:
    """The current time, aware, in UTC: the one clock every transition uses."""
    return datetime.now(timezone.utc)


def new_job_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pass an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """One analysis of one uploaded video, owned by one owner."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_LIST})", name="status_valid"),
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_job_id)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=JobStatus.QUEUED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    progress_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the job's task message was last sent (queued jobs): the reaper re-sends lost messages.
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    params: Mapped[dict] = mapped_column(JSONType, nullable=False, default=dict)
    upload_name: Mapped[str] = mapped_column(String(500), nullable=False)
    stored_name: Mapped[str] = mapped_column(String(500), nullable=False)
    upload_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    upload_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    result: Mapped[dict | None] = mapped_column(JSONType)
    verdict: Mapped[str | None] = mapped_column(String(16))
    fake_probability: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # The queue lane the job's task goes to: interactive (single uploads), batch, or gpu (long videos).
    lane: Mapped[str] = mapped_column(String(32), nullable=False, default="interactive")
    # Batch items: the batch and the file's place in it (None for single jobs).
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    batch_position: Mapped[int | None] = mapped_column(Integer)
    # sha256 of (upload sha256, checkpoint sha256, result-affecting options), set when the job succeeds:
    # a later job with the same key reuses this result instead of computing it again.
    reuse_key: Mapped[str | None] = mapped_column(String(64), index=True)
    reused_from: Mapped[str | None] = mapped_column(String(36))

    windows: Mapped[list["JobWindow"]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    artifacts: Mapped[list["Artifact"]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, owner={self.owner!r}, status={self.status!r}, attempts={self.attempts})"


class Batch(Base):
    """A set of videos handed over together (a folder, a list, many uploads) with the same settings.

    Its items are jobs (`Job.batch_id`); its state is derived from theirs, never stored.
    """

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_owner_created", "owner", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_job_id)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    name: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    params: Mapped[dict] = mapped_column(JSONType, nullable=False, default=dict)

    jobs: Mapped[list[Job]] = relationship(passive_deletes=True, order_by="Job.batch_position")

    def __repr__(self) -> str:
        return f"Batch(id={self.id!r}, owner={self.owner!r}, name={self.name!r})"


class JobWindow(Base):
    """One scored window of one face track: the timeline, partial while the job runs."""

    __tablename__ = "job_windows"
    __table_args__ = (Index("ix_job_windows_job_track_start", "job_id", "track_id", "start_frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    track_id: Mapped[int] = mapped_column(Integer, nullable=False)
    start_frame: Mapped[int] = mapped_column(Integer, nullable=False)
    end_frame: Mapped[int] = mapped_column(Integer, nullable=False)
    start_s: Mapped[float] = mapped_column(Float, nullable=False)
    end_s: Mapped[float] = mapped_column(Float, nullable=False)
    fake_probability: Mapped[float] = mapped_column(Float, nullable=False)

    job: Mapped[Job] = relationship(back_populates="windows")

    def to_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "fake_probability": self.fake_probability,
        }


class Artifact(Base):
    """A file the analysis produced (heatmap, thumbnail); `path` is relative to DATA_DIR/artifacts."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_artifacts_job_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    media_type: Mapped[str] = mapped_column(String(100), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    path: Mapped[str] = mapped_column(String(1000), nullable=False)
    track_id: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")

    job: Mapped[Job] = relationship(back_populates="artifacts")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
            "track_id": self.track_id,
            "description": self.description,
        }


class ApiKey(Base):
    """An API key: who it acts as (`owner`), whether it sees every owner's work (`admin`), and its hash.

    The key itself is shown once at creation and never stored: `secret_sha256` is the SHA-256 of the
    whole key (a random 256-bit secret needs no slow hash); `id` is its public part, used to find the row.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    owner: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, owner={self.owner!r}, admin={self.admin}, revoked={self.revoked_at is not None})"


class WebhookEvent(Base):
    """One completion webhook: subscribed at submission (a job's or a batch's), armed with its payload
    when the job or batch ends, delivered at least once under the same `id` (the `webhook-id` header).

    `payload` None: not ended yet. `next_attempt_at`: when the next attempt is due (None once delivered
    or given up). See shared/db/webhooks.py.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint("(job_id IS NULL) <> (batch_id IS NULL)", name="one_subject"),
        Index("ix_webhook_events_pending", "delivered_at", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    payload: Mapped[dict | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"WebhookEvent(id={self.id!r}, attempts={self.attempts}, delivered={self.delivered_at is not None})"
