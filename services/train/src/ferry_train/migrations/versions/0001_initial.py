"""Initial schema: training jobs and their events.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_jobs",
        sa.Column("job_id", sa.String(63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("current_epoch", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(300), nullable=False),
        sa.Column("checkpoint_uri", sa.Text(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_training_jobs"),
        sa.UniqueConstraint("request_id", name="uq_training_jobs_request_id"),
    )
    op.create_index("ix_training_jobs_state_create", "training_jobs", ["state", "create_time"])
    op.create_index("ix_training_jobs_create", "training_jobs", ["create_time", "job_id"])
    op.create_table(
        "training_job_events",
        sa.Column("job_id", sa.String(63), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "sequence", name="pk_training_job_events"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["training_jobs.job_id"], name="fk_training_job_events_job", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("training_job_events")
    op.drop_index("ix_training_jobs_create", table_name="training_jobs")
    op.drop_index("ix_training_jobs_state_create", table_name="training_jobs")
    op.drop_table("training_jobs")
