"""Model policies (SetModelPolicy) and the drift breach state of each model version.

Revision ID: 0004_model_policies
Revises: 0003_slos_alerts
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_model_policies"
down_revision = "0003_slos_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_policies",
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("drift_threshold", sa.Float(), nullable=False),
        sa.Column("retrain_on_drift", sa.Boolean(), nullable=False),
        sa.Column("min_accuracy", sa.Float(), nullable=False),
        sa.Column("update_time_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_model_policies"),
    )
    op.create_table(
        "drift_states",
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("breaches", sa.BigInteger(), nullable=False),
        sa.Column("training_job", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name="pk_drift_states"),
    )


def downgrade() -> None:
    op.drop_table("drift_states")
    op.drop_table("model_policies")
