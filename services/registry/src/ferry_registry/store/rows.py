"""ORM rows of the registry database (separate from the domain objects in ``domain.py``).

The schema is created and changed only by the Alembic migrations in
``ferry_registry/migrations``; ``metadata`` here is what they are checked against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AliasEventRow",
    "AliasRow",
    "Base",
    "ModelRow",
    "ModelVersionRow",
    "RegistryStateRow",
    "UtcDateTime",
    "metadata",
]

ID_LENGTH = 63

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: dict[Any, Any] = {datetime: UtcDateTime()}


metadata = Base.metadata


class RegistryStateRow(Base):
    """One row (id 1): the global alias-event revision counter.

    Every alias change increments ``revision`` inside its transaction, so the counter
    row is locked until commit: revisions are gap-free and commit in order.
    """

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ModelRow(Base):
    __tablename__ = "models"

    model_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False)
    # Highest version number ever created (what Model.latest_version reports).
    latest_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Highest version number ever handed out, including uploads still in flight.
    next_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    create_time: Mapped[datetime] = mapped_column(nullable=False)
    update_time: Mapped[datetime] = mapped_column(nullable=False)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "request_id"),)

    model_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("models.model_id", ondelete="RESTRICT"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    artifact_uri: Mapped[str] = mapped_column(Text, nullable=False)
    artifact_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    artifact_size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    artifact_format: Mapped[int] = mapped_column(Integer, nullable=False)
    # Set when the registry stored the bytes itself (UploadModelVersion).
    artifact_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, nullable=False)
    params: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False)
    lineage_dataset_version: Mapped[str] = mapped_column(Text, nullable=False)
    lineage_split: Mapped[str] = mapped_column(Text, nullable=False)
    lineage_training_job: Mapped[str] = mapped_column(Text, nullable=False)
    lineage_code_revision: Mapped[str] = mapped_column(Text, nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    create_time: Mapped[datetime] = mapped_column(nullable=False)
    update_time: Mapped[datetime] = mapped_column(nullable=False)


class AliasRow(Base):
    """Current state of an alias.

    ``history_top`` is the revision of the SET event on top of the alias's undo stack
    (see ``SqlRegistryStore.rollback_alias``); ``None`` when there is nothing to undo.
    """

    __tablename__ = "aliases"
    __table_args__ = (
        # The database itself refuses to delete a version an alias points at.
        ForeignKeyConstraint(
            ["model_id", "version"], ["model_versions.model_id", "model_versions.version"], ondelete="RESTRICT"
        ),
        Index("ix_aliases_model_id_version", "model_id", "version"),
    )

    model_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    alias_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    history_top: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    update_time: Mapped[datetime] = mapped_column(nullable=False)


class AliasEventRow(Base):
    """Append-only audit log; ``revision`` is the global, gap-free event number.

    Events outlive their model (no foreign key): the audit log is never rewritten.
    ``undo_link`` is, for a SET, the ``history_top`` the alias had before it (the next
    entry down the undo stack) and, for a ROLLBACK, the revision of the SET it undid.
    """

    __tablename__ = "alias_events"
    __table_args__ = (
        Index("ix_alias_events_model_id_revision", "model_id", "revision"),
        Index("ix_alias_events_model_id_alias_id_revision", "model_id", "alias_id", "revision"),
    )

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model_id: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False)
    alias_id: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False)
    kind: Mapped[int] = mapped_column(Integer, nullable=False)
    from_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    to_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    undo_link: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    create_time: Mapped[datetime] = mapped_column(nullable=False)
