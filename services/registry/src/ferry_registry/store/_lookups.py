"""Rows that every resource's transactions read: lookups and the not-found messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from ferry_common.errors import FerryError, NotFound
from ferry_registry.resources import alias_name, model_name, version_name
from ferry_registry.store._statements import (
    ALIASES,
    MODELS,
    VERSIONS,
)
from ferry_registry.store.rows import ModelRow, ModelVersionRow

__all__ = [
    "SessionFactories",
    "alias_not_found",
    "aliases_of",
    "model_row",
    "version_not_found",
    "version_not_found_on",
]


class SessionFactories:
    """What every part of the SQL store holds: session factories and a clock."""

    _reads: sessionmaker[Session]
    _writes: sessionmaker[Session]
    _clock: Callable[[], datetime]


def model_row(session: Session, model_id: str, *, lock: bool = False) -> ModelRow:
    query: Select[ModelRow] = select(ModelRow).where(ModelRow.model_id == model_id)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(f"model {model_name(model_id)!r} not found", field="name")
    return row


def version_not_found(session: Session, model_id: str, version: int | None, field: str = "name") -> FerryError:
    model = session.get(ModelRow, model_id)
    if model is None:
        return NotFound(f"model {model_name(model_id)!r} not found", field=field)
    newest = session.scalar(select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model_id))
    if version is None:
        return NotFound(f"model {model_name(model_id)!r} has no versions", field=field)
    latest = f"latest is {newest}" if newest else "it has no versions"
    return NotFound(f"model version {version_name(model_id, version)!r} not found ({latest})", field=field)


def version_not_found_on(connection: Connection, model_id: str, version: int, field: str) -> FerryError:
    if connection.execute(select(MODELS.c.model_id).where(MODELS.c.model_id == model_id)).first() is None:
        return NotFound(f"model {model_name(model_id)!r} not found", field=field)
    newest = connection.execute(select(func.max(VERSIONS.c.version)).where(VERSIONS.c.model_id == model_id)).scalar()
    latest = f"latest is {newest}" if newest else "it has no versions"
    return NotFound(f"model version {version_name(model_id, version)!r} not found ({latest})", field=field)


def alias_not_found(session: Session, model_id: str, alias_id: str) -> FerryError:
    if session.get(ModelRow, model_id) is None:
        return NotFound(f"model {model_name(model_id)!r} not found", field="name")
    return NotFound(f"alias {alias_name(model_id, alias_id)!r} not found", field="name")


def aliases_of(session: Session, model_id: str, version: int) -> list[str]:
    query = (
        select(ALIASES.c.alias_id)
        .where(ALIASES.c.model_id == model_id, ALIASES.c.version == version)
        .order_by(ALIASES.c.alias_id)
    )
    return list(session.connection().execute(query).scalars())
