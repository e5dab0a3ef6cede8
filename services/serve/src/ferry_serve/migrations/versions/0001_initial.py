"""Initial schema: deployments, their tombstones and the global revision counter.

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
    state = op.create_table(
        "serve_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("alias_revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_serve_state"),
    )
    op.bulk_insert(state, [{"id": 1, "revision": 0, "alias_revision": 0}])
    op.create_table(
        "deployments",
        sa.Column("deployment_id", sa.String(63), nullable=False),
        sa.Column("model_id", sa.String(63), nullable=False),
        sa.Column("primary_alias", sa.String(63), nullable=True),
        sa.Column("primary_version", sa.BigInteger(), nullable=True),
        sa.Column("canary_alias", sa.String(63), nullable=True),
        sa.Column("canary_version", sa.BigInteger(), nullable=True),
        sa.Column("canary_percent", sa.Integer(), nullable=True),
        sa.Column("shadow_alias", sa.String(63), nullable=True),
        sa.Column("shadow_version", sa.BigInteger(), nullable=True),
        sa.Column("shadow_percent", sa.Integer(), nullable=True),
        sa.Column("batching_enabled", sa.Boolean(), nullable=False),
        sa.Column("max_batch_size", sa.Integer(), nullable=False),
        sa.Column("max_queue_delay_microseconds", sa.BigInteger(), nullable=False),
        sa.Column("sample_rate", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_deployments"),
    )
    op.create_index("ix_deployments_revision", "deployments", ["revision"])
    op.create_table(
        "deployment_tombstones",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("deployment_id", sa.String(63), nullable=False),
        sa.Column("delete_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision", name="pk_deployment_tombstones"),
    )


def downgrade() -> None:
    op.drop_table("deployment_tombstones")
    op.drop_index("ix_deployments_revision", table_name="deployments")
    op.drop_table("deployments")
    op.drop_table("serve_state")
