"""Initial schema: models, versions, aliases, alias events, revision counter.

Revision ID: 0001_initial
Revises:
Create Date: 2024-11-24
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
        "registry_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_state"),
    )
    op.bulk_insert(state, [{"id": 1, "revision": 0}])

    op.create_table(
        "models",
        sa.Column("model_id", sa.String(63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("latest_version", sa.BigInteger(), nullable=False),
        sa.Column("next_version", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_models"),
    )

    op.create_table(
        "model_versions",
        sa.Column("model_id", sa.String(63), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("artifact_format", sa.Integer(), nullable=False),
        sa.Column("artifact_key", sa.Text(), nullable=True),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("lineage_dataset_version", sa.Text(), nullable=False),
        sa.Column("lineage_split", sa.Text(), nullable=False),
        sa.Column("lineage_training_job", sa.Text(), nullable=False),
        sa.Column("lineage_code_revision", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.model_id"], name="fk_model_versions_model_id_models", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("model_id", "version", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "request_id", name="uq_model_versions_model_id_request_id"),
    )

    op.create_table(
        "aliases",
        sa.Column("model_id", sa.String(63), nullable=False),
        sa.Column("alias_id", sa.String(63), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("history_top", sa.BigInteger(), nullable=True),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_aliases_model_id_version_model_versions",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("model_id", "alias_id", name="pk_aliases"),
    )
    op.create_index("ix_aliases_model_id_version", "aliases", ["model_id", "version"])

    op.create_table(
        "alias_events",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("model_id", sa.String(63), nullable=False),
        sa.Column("alias_id", sa.String(63), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("from_version", sa.BigInteger(), nullable=False),
        sa.Column("to_version", sa.BigInteger(), nullable=False),
        sa.Column("undo_link", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision", name="pk_alias_events"),
    )
    op.create_index("ix_alias_events_model_id_revision", "alias_events", ["model_id", "revision"])
    op.create_index("ix_alias_events_model_id_alias_id_revision", "alias_events", ["model_id", "alias_id", "revision"])


def downgrade() -> None:
    op.drop_index("ix_alias_events_model_id_alias_id_revision", table_name="alias_events")
    op.drop_index("ix_alias_events_model_id_revision", table_name="alias_events")
    op.drop_table("alias_events")
    op.drop_index("ix_aliases_model_id_version", table_name="aliases")
    op.drop_table("aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
    op.drop_table("registry_state")
