"""Aliases and their audit history: set (compare-and-set, batches), resolve, delete, roll back, events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, insert, select

from ferry_common.errors import FailedPrecondition, FerryError, NotFound
from ferry_registry.domain import (
    Alias,
    AliasChange,
    AliasEvent,
    AliasEventKind,
    ModelVersion,
    compare_and_set,
)
from ferry_registry.resources import alias_name, model_name, version_name
from ferry_registry.store._convert import (
    alias_from_row,
    event_from_row,
    version_from_row,
)
from ferry_registry.store._lookups import (
    SessionFactories,
    alias_not_found,
    model_row,
    version_not_found_on,
)
from ferry_registry.store._statements import (
    ALIAS_STATE,
    ALIASES,
    EVENTS,
    MOVE_ALIAS,
    RESOLVE,
    STATE,
    lock_models,
    next_revision,
)
from ferry_registry.store.rows import AliasEventRow, AliasRow, ModelVersionRow

__all__ = ["AliasTransactions"]


class AliasTransactions(SessionFactories):
    """Aliases and their audit history: set (compare-and-set, batches), resolve, delete, roll back, events."""

    # ----------------------------------------------------------------- aliases

    def set_aliases(self, changes: Sequence[AliasChange], actor: str, *, batch: bool = False) -> list[Alias]:
        now = self._clock()
        with self._writes.begin() as session:
            connection = session.connection()
            models = lock_models(connection, (change.model_id for change in changes))
            results: list[Alias] = []
            for index, change in enumerate(changes):
                try:
                    results.append(set_alias(connection, models, change, actor, now))
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
                raise alias_not_found(session, model_id, alias_id)
            return alias_from_row(row)

    def resolve_alias(self, model_id: str, alias_id: str) -> ModelVersion:
        # One indexed statement: the version, joined through the alias, with the ids of
        # every alias pointing at it.
        with self._reads.begin() as session:
            row = session.connection().execute(RESOLVE, {"model_id": model_id, "alias_id": alias_id}).first()
            if row is None:
                raise alias_not_found(session, model_id, alias_id)
            return version_from_row(row)

    def list_aliases(self, model_id: str, after: str | None, limit: int) -> list[Alias]:
        query = select(AliasRow).where(AliasRow.model_id == model_id).order_by(AliasRow.alias_id).limit(limit)
        if after is not None:
            query = query.where(AliasRow.alias_id > after)
        with self._reads.begin() as session:
            rows = list(session.scalars(query))
            if not rows:
                model_row(session, model_id)
            return [alias_from_row(row) for row in rows]

    def delete_alias(
        self, model_id: str, alias_id: str, expected_version: int | None, reason: str, actor: str
    ) -> AliasEvent:
        now = self._clock()
        with self._writes.begin() as session:
            model_row(session, model_id, lock=True)
            row = session.get(AliasRow, (model_id, alias_id))
            if row is None:
                raise alias_not_found(session, model_id, alias_id)
            compare_and_set(model_id, alias_id, row.version, expected_version)
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
            model_row(session, model_id, lock=True)
            row = session.get(AliasRow, (model_id, alias_id))
            if row is None:
                raise alias_not_found(session, model_id, alias_id)
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


def set_alias(connection: Connection, models: set[str], change: AliasChange, actor: str, now: datetime) -> Alias:
    if change.model_id not in models:
        raise NotFound(f"model {model_name(change.model_id)!r} not found", field="name")
    # The target version and the alias's current state in one statement.
    current = connection.execute(
        ALIAS_STATE, {"model_id": change.model_id, "alias_id": change.alias_id, "version": change.version}
    ).first()
    if current is None:
        raise version_not_found_on(connection, change.model_id, change.version, field="version")
    exists = current.current is not None
    compare_and_set(change.model_id, change.alias_id, current.current if exists else None, change.expected_version)
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
