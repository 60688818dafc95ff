"""jobs.sent_at: when the job's task message was last sent, so the reaper can re-send lost ones.

Revision ID: 0002_job_sent_at
Revises: 0001_initial
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_job_sent_at"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows from before this revision have no send time; the reaper treats them as long sent.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("sent_at")
