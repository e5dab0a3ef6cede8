"""The SQLAlchemy implementation of :class:`~ferry_registry.store.base.RegistryStore`.

Every method is one transaction. Writes lock in one fixed order so that concurrent
transactions never deadlock: the model rows involved (sorted by id, ``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the whole database),
then the ``registry_state`` counter row (taken by the ``UPDATE`` that hands out the next
revision, held until commit). Locking the model row serialises everything that changes
one model's versions and aliases, so a compare-and-set reads the state it writes against;
holding the counter row until commit makes revisions gap-free and committed in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace

from sqlalchemy import Connection, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ferry_common.errors import AlreadyExists, FailedPrecondition, FerryError, NotFound
from ferry_registry.domain import Alias, AliasChange, AliasEvent, AliasEventKind, Model, ModelVersion, NewModelVersion
from ferry_registry.resources import alias_name, model_name, version_name
from ferry_registry.store._convert import (
    alias_from_row,
    event_from_row,
    model_from_row,
    signature_to_json,
    version_from_row,
)
from ferry_registry.store._statements import (
    ALIAS_STATE,
    ALIASES,
    EVENTS,
    MODELS,
    MOVE_ALIAS,
    RESOLVE,
    STATE,
    VERSION_SELECT,
    VERSIONS,
    check_expected,
    label_terms,
    lock_models,
    next_revision,
)
from ferry_registry.store.database import Database
from ferry_registry.store.rows import AliasEventRow, AliasRow, ModelRow, ModelVersionRow

__all__ = ["SqlRegistryStore"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqlRegistryStore:
    """Registry state in a SQL database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = _utcnow) -> None:
        self._reads = database.reads
        self._writes = database.writes
        self._clock = clock

    # ------------------------------------------------------------------ models

    def create_model(self, model_id: str, description: str, labels: Mapping[str, str]) -> Model:
        now = self._clock()
        try:
            with self._writes.begin() as session:
                if session.get(ModelRow, model_id) is not None:
                    raise AlreadyExists(f"model {model_name(model_id)!r} already exists", field="model_id")
                row = ModelRow(
                    model_id=model_id,
                    description=description,
                    labels=dict(labels),
                    latest_version=0,
                    next_version=0,
                    create_time=now,
                    update_time=now,
                )
                session.add(row)
                session.flush()
                return model_from_row(row)
        except IntegrityError:
            # Another process created it between our check and our insert.
            raise AlreadyExists(f"model {model_name(model_id)!r} already exists", field="model_id") from None

    def get_model(self, model_id: str) -> Model:
        with self._reads.begin() as session:
            return model_from_row(_model_row(session, model_id))

    def list_models(self, labels: Mapping[str, str], after: str | None, limit: int) -> list[Model]:
        query = select(ModelRow).where(*label_terms(ModelRow, labels)).order_by(ModelRow.model_id).limit(limit)
        if after is not None:
            query = query.where(ModelRow.model_id > after)
        with self._reads.begin() as session:
            return [model_from_row(row) for row in session.scalars(query)]

    def update_model(self, model_id: str, description: str | None, labels: Mapping[str, str] | None) -> Model:
        with self._writes.begin() as session:
            row = _model_row(session, model_id, lock=True)
            if description is not None:
                row.description = description
            if labels is not None:
                row.labels = dict(labels)
            row.update_time = self._clock()
            session.flush()
            return model_from_row(row)

    def delete_model(self, model_id: str, force: bool) -> list[str]:
        with self._writes.begin() as session:
            _model_row(session, model_id, lock=True)
            aliases = list(
                session.scalars(
                    select(AliasRow.alias_id).where(AliasRow.model_id == model_id).order_by(AliasRow.alias_id)
                )
            )
            if aliases:
                raise FailedPrecondition(
                    f"model {model_name(model_id)!r} still has aliases ({', '.join(aliases)}): delete them first "
                    "(DeleteModel refuses while aliases exist, even with force)",
                    field="name",
                )
            versions = session.execute(
                select(ModelVersionRow.version, ModelVersionRow.artifact_key).where(
                    ModelVersionRow.model_id == model_id
                )
            ).all()
            if versions and not force:
                raise FailedPrecondition(
                    f"model {model_name(model_id)!r} has {len(versions)} version(s): delete them first or set force",
                    field="force",
                )
            session.execute(delete(ModelVersionRow).where(ModelVersionRow.model_id == model_id))
            session.execute(delete(ModelRow).where(ModelRow.model_id == model_id))
            return [key for _, key in versions if key]

    # ---------------------------------------------------------------- versions

    def find_version_by_request(self, model_id: str, request_id: str) -> ModelVersion | None:
        query = VERSION_SELECT.where(VERSIONS.c.model_id == model_id, VERSIONS.c.request_id == request_id)
        with self._reads.begin() as session:
            row = session.connection().execute(query).first()
            return None if row is None else version_from_row(row)

    def reserve_version(self, model_id: str) -> int:
        with self._writes.begin() as session:
            row = _model_row(session, model_id, lock=True)
            row.next_version += 1
            return row.next_version

    def release_version(self, model_id: str, version: int) -> None:
        with self._writes.begin() as session:
            session.execute(
                update(ModelRow)
                .where(ModelRow.model_id == model_id, ModelRow.next_version == version)
                .values(next_version=version - 1)
            )

    def create_version(
        self,
        model_id: str,
        new: NewModelVersion,
        request_id: str | None,
        *,
        reserved: int | None = None,
        artifact_key: str | None = None,
    ) -> tuple[ModelVersion, bool]:
        now = self._clock()
        with self._writes.begin() as session:
            connection = session.connection()
            model = connection.execute(
                select(MODELS.c.next_version, MODELS.c.latest_version)
                .where(MODELS.c.model_id == model_id)
                .with_for_update()
            ).first()
            if model is None:
                raise NotFound(f"model {model_name(model_id)!r} not found", field="parent")
            if request_id:
                existing = connection.execute(
                    VERSION_SELECT.where(VERSIONS.c.model_id == model_id, VERSIONS.c.request_id == request_id)
                ).first()
                if existing is not None:
                    return version_from_row(existing), False
            number = model.next_version + 1 if reserved is None else reserved
            connection.execute(
                update(MODELS)
                .where(MODELS.c.model_id == model_id)
                .values(
                    next_version=max(model.next_version, number),
                    latest_version=max(model.latest_version, number),
                    update_time=now,
                )
            )
            values = {
                "model_id": model_id,
                "version": number,
                "description": new.description,
                "artifact_uri": new.artifact.uri,
                "artifact_sha256": new.artifact.sha256,
                "artifact_size_bytes": new.artifact.size_bytes,
                "artifact_format": int(new.artifact.format),
                "artifact_key": artifact_key,
                "signature": signature_to_json(new.signature),
                "metrics": dict(new.metrics),
                "params": dict(new.params),
                "labels": dict(new.labels),
                "lineage_dataset_version": new.lineage.dataset_version,
                "lineage_split": new.lineage.split,
                "lineage_training_job": new.lineage.training_job,
                "lineage_code_revision": new.lineage.code_revision,
                "request_id": request_id or None,
                "create_time": now,
                "update_time": now,
            }
            connection.execute(insert(VERSIONS), values)
            return version_from_row(SimpleNamespace(**values, alias_ids=None)), True

    def get_version(self, model_id: str, version: int | None) -> ModelVersion:
        query = VERSION_SELECT.where(VERSIONS.c.model_id == model_id)
        if version is None:
            query = query.order_by(VERSIONS.c.version.desc()).limit(1)
        else:
            query = query.where(VERSIONS.c.version == version)
        with self._reads.begin() as session:
            row = session.connection().execute(query).first()
            if row is None:
                raise _version_not_found(session, model_id, version)
            return version_from_row(row)

    def list_versions(
        self, model_id: str, labels: Mapping[str, str], before: int | None, limit: int
    ) -> list[ModelVersion]:
        query = (
            VERSION_SELECT.where(VERSIONS.c.model_id == model_id, *label_terms(ModelVersionRow, labels))
            .order_by(VERSIONS.c.version.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(VERSIONS.c.version < before)
        with self._reads.begin() as session:
            rows = list(session.connection().execute(query))
            if not rows:
                _model_row(session, model_id)
            return [version_from_row(row) for row in rows]

    def update_version(
        self,
        model_id: str,
        version: int,
        description: str | None,
        labels: Mapping[str, str] | None,
        metrics: Mapping[str, float] | None,
    ) -> ModelVersion:
        with self._writes.begin() as session:
            _model_row(session, model_id, lock=True)
            row = session.get(ModelVersionRow, (model_id, version))
            if row is None:
                raise _version_not_found(session, model_id, version)
            if description is not None:
                row.description = description
            if labels is not None:
                row.labels = dict(labels)
            if metrics is not None:
                row.metrics = dict(metrics)
            row.update_time = self._clock()
            session.flush()
            query = VERSION_SELECT.where(VERSIONS.c.model_id == model_id, VERSIONS.c.version == version)
            return version_from_row(session.connection().execute(query).one())

    def delete_version(self, model_id: str, version: int) -> str | None:
        with self._writes.begin() as session:
            _model_row(session, model_id, lock=True)
            row = session.get(ModelVersionRow, (model_id, version))
            if row is None:
                raise _version_not_found(session, model_id, version)
            aliases = _aliases_of(session, model_id, version)
            if aliases:
                raise FailedPrecondition(
                    f"model version {version_name(model_id, version)!r} is the target of alias(es) "
                    f"{', '.join(aliases)}: move or delete them first",
                    field="name",
                )
            key = row.artifact_key
            session.delete(row)
            return key

    # ----------------------------------------------------------------- aliases

    def set_aliases(self, changes: Sequence[AliasChange], actor: str, *, batch: bool = False) -> list[Alias]:
        now = self._clock()
        with self._writes.begin() as session:
            connection = session.connection()
            models = lock_models(connection, (change.model_id for change in changes))
            results: list[Alias] = []
            for index, change in enumerate(changes):
                try:
                    results.append(_set_alias(connection, models, change, actor, now))
                except FerryError as error:
                    if not batch:
                        raise
                    raise type(error)(f"requests[{index}]: {error.message}", field=f"requests[{index}]") from None
            return results

    def get_alias(self, model_id: str, alias_id: str) -> Alias:
        with self._reads.begin() as session:
            row = (
                session.connection()
                .execute(select(ALIASES).where(ALIASES.c.model_id == model_id, ALIASES.c.alias_id == alias_id))
                .first()
            )
            if row is None:
                raise _alias_not_found(session, model_id, alias_id)
            return alias_from_row(row)

    def resolve_alias(self, model_id: str, alias_id: str) -> ModelVersion:
        # One indexed statement: the version, joined through the alias, with the ids of
        # every alias pointing at it.
        with self._reads.begin() as session:
            row = session.connection().execute(RESOLVE, {"model_id": model_id, "alias_id": alias_id}).first()
            if row is None:
                raise _alias_not_found(session, model_id, alias_id)
            return version_from_row(row)

    def list_aliases(self, model_id: str, after: str | None, limit: int) -> list[Alias]:
        query = select(AliasRow).where(AliasRow.model_id == model_id).order_by(AliasRow.alias_id).limit(limit)
        if after is not None:
            query = query.where(AliasRow.alias_id > after)
        with self._reads.begin() as session:
            rows = list(session.scalars(query))
            if not rows:
                _model_row(session, model_id)
            return [alias_from_row(row) for row in rows]

    def delete_alias(
        self, model_id: str, alias_id: str, expected_version: int | None, reason: str, actor: str
    ) -> AliasEvent:
        now = self._clock()
        with self._writes.begin() as session:
            _model_row(session, model_id, lock=True)
            row = session.get(AliasRow, (model_id, alias_id))
            if row is None:
                raise _alias_not_found(session, model_id, alias_id)
            check_expected(model_id, alias_id, row.version, expected_version)
            revision = next_revision(session.connection())
            event = AliasEventRow(
                revision=revision,
                model_id=model_id,
                alias_id=alias_id,
                kind=int(AliasEventKind.DELETE),
                from_version=row.version,
                to_version=0,
                undo_link=None,
                actor=actor,
                reason=reason,
                create_time=now,
            )
            session.add(event)
            session.delete(row)
            session.flush()
            return event_from_row(event)

    def rollback_alias(self, model_id: str, alias_id: str, reason: str, actor: str) -> Alias:
        """Move the alias back to its previous target.

        The alias keeps an undo stack of its SET events (``AliasRow.history_top`` and the
        ``undo_link`` of each SET). A SET pushes itself; a ROLLBACK pops the top SET and
        moves the alias back to that SET's ``from_version``. So the previous target is
        the ``from_version`` of the most recent SET that moved the alias to its current
        version *and has not been undone yet*, and repeated rollbacks walk back through
        the history one change at a time: after SET 1->2, SET 2->3, rollbacks go 3->2,
        then 2->1, then fail. A history 1->2, 2->1, 1->2 unwinds as 2->1, 1->2, 2->1
        (each step undoes exactly one change) instead of bouncing between the last two.

        FailedPrecondition when nothing is left to undo (the remaining SET created the
        alias, or it was created by a SET after a DELETE) or when the previous target
        version has been deleted since.
        """
        now = self._clock()
        with self._writes.begin() as session:
            _model_row(session, model_id, lock=True)
            row = session.get(AliasRow, (model_id, alias_id))
            if row is None:
                raise _alias_not_found(session, model_id, alias_id)
            top = session.get(AliasEventRow, row.history_top) if row.history_top is not None else None
            if top is None or top.from_version == 0:
                raise FailedPrecondition(
                    f"alias {alias_name(model_id, alias_id)!r} has no previous target: every earlier change "
                    f"was already rolled back or it was created at version {row.version}",
                    field="name",
                )
            target = top.from_version
            if session.get(ModelVersionRow, (model_id, target)) is None:
                raise FailedPrecondition(
                    f"alias {alias_name(model_id, alias_id)!r}: previous target "
                    f"{version_name(model_id, target)!r} has been deleted",
                    field="name",
                )
            revision = next_revision(session.connection())
            session.add(
                AliasEventRow(
                    revision=revision,
                    model_id=model_id,
                    alias_id=alias_id,
                    kind=int(AliasEventKind.ROLLBACK),
                    from_version=row.version,
                    to_version=target,
                    undo_link=top.revision,
                    actor=actor,
                    reason=reason,
                    create_time=now,
                )
            )
            row.version = target
            row.revision = revision
            row.history_top = top.undo_link
            row.update_time = now
            session.flush()
            return alias_from_row(row)

    def list_events(self, model_id: str | None, alias_id: str | None, after: int, limit: int) -> list[AliasEvent]:
        query = select(EVENTS).where(EVENTS.c.revision > after).order_by(EVENTS.c.revision).limit(limit)
        if model_id is not None:
            query = query.where(EVENTS.c.model_id == model_id)
        if alias_id is not None:
            query = query.where(EVENTS.c.alias_id == alias_id)
        with self._reads.begin() as session:
            return [event_from_row(row) for row in session.connection().execute(query)]

    def current_revision(self) -> int:
        with self._reads.begin() as session:
            query = select(STATE.c.revision).where(STATE.c.id == 1)
            return int(session.connection().execute(query).scalar_one())


# ---------------------------------------------------------------------- helpers


def _model_row(session: Session, model_id: str, *, lock: bool = False) -> ModelRow:
    query: Select[ModelRow] = select(ModelRow).where(ModelRow.model_id == model_id)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(f"model {model_name(model_id)!r} not found", field="name")
    return row


def _set_alias(connection: Connection, models: set[str], change: AliasChange, actor: str, now: datetime) -> Alias:
    if change.model_id not in models:
        raise NotFound(f"model {model_name(change.model_id)!r} not found", field="name")
    # The target version and the alias's current state in one statement.
    current = connection.execute(
        ALIAS_STATE, {"model_id": change.model_id, "alias_id": change.alias_id, "version": change.version}
    ).first()
    if current is None:
        raise _version_not_found_on(connection, change.model_id, change.version, field="version")
    exists = current.current is not None
    check_expected(change.model_id, change.alias_id, current.current if exists else None, change.expected_version)
    if exists and current.current == change.version:
        # Already there: not a change, so no event.
        row = connection.execute(
            select(ALIASES).where(ALIASES.c.model_id == change.model_id, ALIASES.c.alias_id == change.alias_id)
        ).one()
        return alias_from_row(row)
    revision = next_revision(connection)
    connection.execute(
        insert(EVENTS),
        {
            "revision": revision,
            "model_id": change.model_id,
            "alias_id": change.alias_id,
            "kind": int(AliasEventKind.SET),
            "from_version": current.current if exists else 0,
            "to_version": change.version,
            "undo_link": current.history_top if exists else None,
            "actor": actor,
            "reason": change.reason,
            "create_time": now,
        },
    )
    values = {"version": change.version, "revision": revision, "history_top": revision, "update_time": now}
    if exists:
        connection.execute(MOVE_ALIAS, {"key_model_id": change.model_id, "key_alias_id": change.alias_id, **values})
    else:
        connection.execute(insert(ALIASES), {"model_id": change.model_id, "alias_id": change.alias_id, **values})
    return Alias(change.model_id, change.alias_id, change.version, revision, now)


def _version_not_found(session: Session, model_id: str, version: int | None, field: str = "name") -> FerryError:
    model = session.get(ModelRow, model_id)
    if model is None:
        return NotFound(f"model {model_name(model_id)!r} not found", field=field)
    newest = session.scalar(select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model_id))
    if version is None:
        return NotFound(f"model {model_name(model_id)!r} has no versions", field=field)
    latest = f"latest is {newest}" if newest else "it has no versions"
    return NotFound(f"model version {version_name(model_id, version)!r} not found ({latest})", field=field)


def _version_not_found_on(connection: Connection, model_id: str, version: int, field: str) -> FerryError:
    if connection.execute(select(MODELS.c.model_id).where(MODELS.c.model_id == model_id)).first() is None:
        return NotFound(f"model {model_name(model_id)!r} not found", field=field)
    newest = connection.execute(select(func.max(VERSIONS.c.version)).where(VERSIONS.c.model_id == model_id)).scalar()
    latest = f"latest is {newest}" if newest else "it has no versions"
    return NotFound(f"model version {version_name(model_id, version)!r} not found ({latest})", field=field)


def _alias_not_found(session: Session, model_id: str, alias_id: str) -> FerryError:
    if session.get(ModelRow, model_id) is None:
        return NotFound(f"model {model_name(model_id)!r} not found", field="name")
    return NotFound(f"alias {alias_name(model_id, alias_id)!r} not found", field="name")


def _aliases_of(session: Session, model_id: str, version: int) -> list[str]:
    query = (
        select(ALIASES.c.alias_id)
        .where(ALIASES.c.model_id == model_id, ALIASES.c.version == version)
        .order_by(ALIASES.c.alias_id)
    )
    return list(session.connection().execute(query).scalars())
