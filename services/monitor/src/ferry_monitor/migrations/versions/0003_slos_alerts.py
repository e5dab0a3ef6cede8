"""Service-level objectives and the alerts their breaches raise.

Revision ID: 0003_slos_alerts
Revises: 0002_inference_records
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_slos_alerts"
down_revision = "0002_inference_records"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slos",
        sa.Column("slo_id", sa.String(63), nullable=False),
        sa.Column("service", sa.String(256), nullable=False),
        sa.Column("method", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("percentile", sa.Float(), nullable=False),
        sa.Column("latency_threshold_ms", sa.Float(), nullable=False),
        sa.Column("max_error_rate", sa.Float(), nullable=False),
        sa.Column("window_seconds", sa.BigInteger(), nullable=False),
        sa.Column("min_count", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.Integer(), nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("slo_id", name="pk_slos"),
    )
    op.create_table(
        "alerts",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("slo", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("action", sa.Integer(), nullable=False),
        sa.Column("action_result", sa.Text(), nullable=False),
        sa.Column("create_time_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_alerts"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("slos")
