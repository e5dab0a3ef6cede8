"""Train's tables (SQLAlchemy Core): jobs and their events. Rows stay apart from domain objects."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["events", "jobs", "metadata"]

metadata = sa.MetaData()

jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("job_id", sa.String(63), primary_key=True),
    sa.Column("spec", sa.JSON(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("current_epoch", sa.Integer(), nullable=False),
    sa.Column("metrics", sa.JSON(), nullable=False),
    sa.Column("model_version", sa.String(300), nullable=False),
    sa.Column("checkpoint_uri", sa.Text(), nullable=False),
    sa.Column("last_sequence", sa.BigInteger(), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True, unique=True),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("environment", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    sa.Index("ix_training_jobs_state_create", "state", "create_time"),
    sa.Index("ix_training_jobs_create", "create_time", "job_id"),
)

events = sa.Table(
    "training_job_events",
    metadata,
    sa.Column("job_id", sa.String(63), sa.ForeignKey("training_jobs.job_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sequence", sa.BigInteger(), primary_key=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
)
