"""Initial schema: latency buckets.

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
        "latency_buckets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(256), nullable=False),
        sa.Column("method", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("max_ms", sa.Float(), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_latency_buckets"),
        sa.UniqueConstraint(
            "bucket_start",
            "service",
            "method",
            "deployment",
            "model",
            "version",
            "route",
            name="uq_latency_buckets_series",
        ),
    )
    op.create_index("ix_latency_buckets_bucket_start", "latency_buckets", ["bucket_start"])


def downgrade() -> None:
    op.drop_index("ix_latency_buckets_bucket_start", table_name="latency_buckets")
    op.drop_table("latency_buckets")
