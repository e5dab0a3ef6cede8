"""Inference records and their ground truth.

Revision ID: 0002_inference_records
Revises: 0001_initial
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_inference_records"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(63), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("shadow_comparison", sa.LargeBinary(), nullable=False),
        sa.Column("ground_truth", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inference_records"),
    )
    op.create_index("ix_inference_records_request_id", "inference_records", ["request_id"])
    op.create_index("ix_inference_records_model_time", "inference_records", ["model", "version", "time_ns"])
    op.create_index("ix_inference_records_time", "inference_records", ["time_ns"])


def downgrade() -> None:
    op.drop_index("ix_inference_records_time", table_name="inference_records")
    op.drop_index("ix_inference_records_model_time", table_name="inference_records")
    op.drop_index("ix_inference_records_request_id", table_name="inference_records")
    op.drop_table("inference_records")
