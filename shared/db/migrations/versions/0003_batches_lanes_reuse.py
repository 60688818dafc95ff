"""Batches, queue lanes and result reuse.

- `batches`: a set of videos submitted together; its items are jobs (`jobs.batch_id`, `batch_position`).
- `jobs.lane`: interactive, batch or gpu; the reaper re-sends a lost message to the job's lane.
- `jobs.reuse_key` / `reused_from`: the same file with the same model and settings reuses a stored result.

Revision ID: 0003_batches_lanes_reuse
Revises: 0002_job_sent_at
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_batches_lanes_reuse"
down_revision = "0002_job_sent_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("name", sa.String(500), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("params", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"), nullable=False),
    )
    op.create_index("ix_batches_owner_created", "batches", ["owner", "created_at", "id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lane", sa.String(32), nullable=False, server_default="interactive"))
        batch.add_column(sa.Column("batch_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("batch_position", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reuse_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reused_from", sa.String(36), nullable=True))
        batch.create_foreign_key("fk_jobs_batch_id_batches", "batches", ["batch_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_jobs_batch_id", ["batch_id"])
        batch.create_index("ix_jobs_reuse_key", ["reuse_key"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_reuse_key")
        batch.drop_index("ix_jobs_batch_id")
        batch.drop_constraint("fk_jobs_batch_id_batches", type_="foreignkey")
        for column in ("reused_from", "reuse_key", "batch_position", "batch_id", "lane"):
            batch.drop_column(column)
    op.drop_index("ix_batches_owner_created", table_name="batches")
    op.drop_table("batches")
