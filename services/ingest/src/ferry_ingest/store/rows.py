"""SQLAlchemy rows of the ingest database (kept apart from the domain objects)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "DatasetRow", "PendingCommitRow", "VersionRow"]


class Base(DeclarativeBase):
    pass


class DatasetRow(Base):
    """A dataset; created in the same transaction as its first version."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Highest version number ever committed; numbers are never reused.
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class VersionRow(Base):
    """A committed, immutable dataset version (its objects are written before the row)."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        Index("ix_dataset_versions_sha256", "dataset_id", "sha256"),
        Index("ix_dataset_versions_request_id", "dataset_id", "request_id"),
    )

    dataset_id: Mapped[str] = mapped_column(String(63), ForeignKey("datasets.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(255), default="")
    row_count: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    schema_fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    uri: Mapped[str] = mapped_column(Text)
    splits: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class PendingCommitRow(Base):
    """A commit (or delete) of ``dataset_id`` under way: its objects may exist without a row.

    Written in its own transaction before any object of the version can become
    visible, removed after the version's row committed (or the delete finished). A
    record left by a crash tells the next start which datasets to sweep.
    """

    __tablename__ = "pending_commits"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(63))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
