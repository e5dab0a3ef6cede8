"""The accuracy breach state of each model version (ModelPolicy.min_accuracy).

Revision ID: 0005_accuracy_states
Revises: 0004_model_policies
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_accuracy_states"
down_revision = "0004_model_policies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accuracy_states",
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("breaches", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name="pk_accuracy_states"),
    )


def downgrade() -> None:
    op.drop_table("accuracy_states")
