"""Serve's tables (SQLAlchemy Core). Rows stay apart from domain objects.

- ``serve_state``: one row (id 1) holding the global revision counter. Every write takes
  the next revision by updating it inside its transaction, so the row stays locked until
  commit: revisions are handed out gap-free *and commit in order*, which is what lets a
  replica poll "everything above N" without missing a slow transaction.
- ``deployments``: one row per deployment; ``revision`` is the revision of its last user
  change (indexed: the change feed reads by it).
- ``deployment_tombstones``: one row per delete, at the delete's revision, so a replica
  polling the feed sees deletes too.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["deployments", "metadata", "serve_state", "tombstones"]

metadata = sa.MetaData()

serve_state = sa.Table(
    "serve_state",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger(), nullable=False),
    # The last registry alias event (WatchAliases revision) serve acted on: a restarted
    # serve resumes its watch after it (every replica raises it, never lowers it).
    sa.Column("alias_revision", sa.BigInteger(), nullable=False),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("deployment_id", sa.String(63), primary_key=True),
    sa.Column("model_id", sa.String(63), nullable=False),
    sa.Column("primary_alias", sa.String(63), nullable=True),
    sa.Column("primary_version", sa.BigInteger(), nullable=True),
    # A split is absent when its percent is NULL.
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
    sa.Index("ix_deployments_revision", "revision"),
)

tombstones = sa.Table(
    "deployment_tombstones",
    metadata,
    sa.Column("revision", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("deployment_id", sa.String(63), nullable=False),
    sa.Column("delete_time", sa.DateTime(timezone=True), nullable=False),
)
