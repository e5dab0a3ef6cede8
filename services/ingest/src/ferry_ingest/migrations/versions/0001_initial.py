"""datasets and dataset versions

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("dataset_id", sa.String(63), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("schema_fields", sa.JSON(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("splits", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dataset_versions_sha256", "dataset_versions", ["dataset_id", "sha256"])
    op.create_index("ix_dataset_versions_request_id", "dataset_versions", ["dataset_id", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_dataset_versions_request_id", "dataset_versions")
    op.drop_index("ix_dataset_versions_sha256", "dataset_versions")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
