"""Tables, prebuilt Core statements and the locking steps every writer shares.

The hot paths (SetAlias, ResolveAlias, CreateModelVersion) use Core statements built
once at import: building an aliased select costs more than running it on SQLite, and
Core rows skip the ORM identity map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, func, select, update

from ferry_registry.store.rows import AliasEventRow, AliasRow, ModelRow, ModelVersionRow, RegistryStateRow, metadata

__all__ = [
    "ALIASES",
    "ALIAS_STATE",
    "EVENTS",
    "MODELS",
    "MOVE_ALIAS",
    "RESOLVE",
    "STATE",
    "VERSIONS",
    "VERSION_SELECT",
    "label_terms",
    "lock_models",
    "next_revision",
]

# The tables, for the Core statements of the hot paths (no ORM identity-map overhead).
MODELS = metadata.tables[ModelRow.__tablename__]
VERSIONS = metadata.tables[ModelVersionRow.__tablename__]
ALIASES = metadata.tables[AliasRow.__tablename__]
EVENTS = metadata.tables[AliasEventRow.__tablename__]
STATE = metadata.tables[RegistryStateRow.__tablename__]


def _build_version_select() -> Select[Any]:
    pointing = ALIASES.alias("pointing")
    alias_ids = (
        select(func.aggregate_strings(pointing.c.alias_id, ","))
        .where(pointing.c.model_id == VERSIONS.c.model_id, pointing.c.version == VERSIONS.c.version)
        .scalar_subquery()
        .label("alias_ids")
    )
    return select(VERSIONS, alias_ids)


# Every column of a version plus ``alias_ids``: the aliases pointing at it, comma-separated.
VERSION_SELECT = _build_version_select()
RESOLVE = VERSION_SELECT.join(
    ALIASES, and_(ALIASES.c.model_id == VERSIONS.c.model_id, ALIASES.c.version == VERSIONS.c.version)
).where(ALIASES.c.model_id == bindparam("model_id"), ALIASES.c.alias_id == bindparam("alias_id"))
ALIAS_STATE = (
    select(VERSIONS.c.version, ALIASES.c.version.label("current"), ALIASES.c.history_top)
    .select_from(VERSIONS)
    .outerjoin(ALIASES, and_(ALIASES.c.model_id == bindparam("model_id"), ALIASES.c.alias_id == bindparam("alias_id")))
    .where(VERSIONS.c.model_id == bindparam("model_id"), VERSIONS.c.version == bindparam("version"))
)
_NEXT_REVISION = update(STATE).where(STATE.c.id == 1).values(revision=STATE.c.revision + 1).returning(STATE.c.revision)
MOVE_ALIAS = (
    update(ALIASES)
    .where(ALIASES.c.model_id == bindparam("key_model_id"), ALIASES.c.alias_id == bindparam("key_alias_id"))
    .values(
        version=bindparam("version"),
        revision=bindparam("revision"),
        history_top=bindparam("history_top"),
        update_time=bindparam("update_time"),
    )
)


def lock_models(connection: Connection, model_ids: Iterable[str]) -> set[str]:
    """Lock the rows of several models, in id order (the order every writer uses)."""
    ids = sorted(set(model_ids))
    query = select(MODELS.c.model_id).where(MODELS.c.model_id.in_(ids)).order_by(MODELS.c.model_id).with_for_update()
    return set(connection.execute(query).scalars())


def next_revision(connection: Connection) -> int:
    """Take the next global revision; the counter row stays locked until commit."""
    return int(connection.execute(_NEXT_REVISION).scalar_one())


def label_terms(row: type[ModelRow] | type[ModelVersionRow], labels: Mapping[str, str]) -> list[ColumnElement[bool]]:
    column: Any = row.__table__.c.labels
    return [column[key].as_string() == value for key, value in labels.items()]
