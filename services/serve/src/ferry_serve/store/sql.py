"""The serve store on SQLAlchemy 2.x (SQLite or PostgreSQL).

Every create, update and delete locks the revision counter row first (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite write transactions hold the database lock from ``BEGIN
IMMEDIATE``), then the deployment's row. One lock order for every writer: no deadlock,
and revisions commit in the order they are handed out, so a reader that sees revision
N committed has every change up to N visible. :meth:`SqlServeStore.set_state` locks the
deployment's row only: it takes no revision.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ferry_common.database import Database
from ferry_common.errors import Aborted, AlreadyExists, NotFound
from ferry_common.names import page_size as checked_page_size
from ferry_common.names import shorten
from ferry_common.pagination import Pages
from ferry_serve.domain import (
    BatchingSpec,
    Deployment,
    DeploymentChanges,
    DeploymentState,
    Split,
    Target,
)
from ferry_serve.store.base import Changes
from ferry_serve.store.rows import deployments, serve_state, tombstones

__all__ = ["MAX_MESSAGE", "SqlServeStore", "etag_for"]

# A state's message comes from Triton's errors: kept whole up to this, cut beyond.
MAX_MESSAGE = 4000


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _utc(value: datetime.datetime) -> datetime.datetime:
    # SQLite gives naive datetimes back.
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def etag_for(deployment_id: str, revision: int) -> str:
    """The etag of a deployment at a revision: opaque, and new on every change (revisions are global)."""
    return hashlib.sha256(f"{deployment_id}/{revision}".encode()).hexdigest()[:20]


def _target(alias: str | None, version: int | None) -> Target:
    return Target(alias=alias) if alias is not None else Target(version=version)


def _split(alias: str | None, version: int | None, percent: int | None) -> Split | None:
    if percent is None:
        return None
    return Split(_target(alias, version), percent)


def _deployment(row: RowMapping) -> Deployment:
    revision = int(row["revision"])
    return Deployment(
        deployment_id=row["deployment_id"],
        model_id=row["model_id"],
        primary=_target(row["primary_alias"], row["primary_version"]),
        canary=_split(row["canary_alias"], row["canary_version"], row["canary_percent"]),
        shadow=_split(row["shadow_alias"], row["shadow_version"], row["shadow_percent"]),
        batching=BatchingSpec(
            enabled=bool(row["batching_enabled"]),
            max_batch_size=int(row["max_batch_size"]),
            max_queue_delay_microseconds=int(row["max_queue_delay_microseconds"]),
        ),
        sample_rate=float(row["sample_rate"]),
        state=DeploymentState(row["state"]),
        message=row["message"],
        etag=etag_for(row["deployment_id"], revision),
        revision=revision,
        create_time=_utc(row["create_time"]),
        update_time=_utc(row["update_time"]),
    )


def _split_values(prefix: str, split: Split | None) -> dict[str, Any]:
    if split is None:
        return {f"{prefix}_alias": None, f"{prefix}_version": None, f"{prefix}_percent": None}
    return {
        f"{prefix}_alias": split.target.alias,
        f"{prefix}_version": split.target.version,
        f"{prefix}_percent": split.percent,
    }


def _spec_values(deployment: Deployment) -> dict[str, Any]:
    """The columns a user sets."""
    return {
        "model_id": deployment.model_id,
        "primary_alias": deployment.primary.alias,
        "primary_version": deployment.primary.version,
        **_split_values("canary", deployment.canary),
        **_split_values("shadow", deployment.shadow),
        "batching_enabled": deployment.batching.enabled,
        "max_batch_size": deployment.batching.max_batch_size,
        "max_queue_delay_microseconds": deployment.batching.max_queue_delay_microseconds,
        "sample_rate": deployment.sample_rate,
    }


def _not_found(deployment_id: str, field: str) -> NotFound:
    return NotFound(f"{field}: deployments/{deployment_id} not found", field=field)


def _select(deployment_id: str) -> sa.Select[Any]:
    return sa.select(deployments).where(deployments.c.deployment_id == deployment_id)


class SqlServeStore:
    """:class:`~ferry_serve.store.base.ServeStore` on a :class:`~ferry_common.database.Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _lock_revision(session: Session) -> int:
        """Lock the counter row (every writer's first lock); returns the newest revision."""
        query = sa.select(serve_state.c.revision).where(serve_state.c.id == 1).with_for_update()
        return int(session.execute(query).scalar_one())

    @staticmethod
    def _take_revision(session: Session, current: int) -> int:
        revision = current + 1
        session.execute(sa.update(serve_state).where(serve_state.c.id == 1).values(revision=revision))
        return revision

    @staticmethod
    def _locked(session: Session, deployment_id: str, field: str) -> Deployment:
        row = session.execute(_select(deployment_id).with_for_update()).mappings().first()
        if row is None:
            raise _not_found(deployment_id, field)
        return _deployment(row)

    # ---------------------------------------------------------------- deployments

    def create(self, draft: Deployment) -> Deployment:
        deployment_id = draft.deployment_id
        with self._database.writes.begin() as session:
            revision = self._lock_revision(session)
            taken = session.execute(
                sa.select(deployments.c.deployment_id).where(deployments.c.deployment_id == deployment_id)
            )
            if taken.first() is not None:
                raise self._taken(deployment_id)
            revision = self._take_revision(session, revision)
            now = _now()
            created = dataclasses.replace(
                draft,
                state=DeploymentState.PENDING,
                message="",
                revision=revision,
                etag=etag_for(deployment_id, revision),
                create_time=now,
                update_time=now,
            )
            try:
                session.execute(
                    sa.insert(deployments).values(
                        deployment_id=deployment_id,
                        **_spec_values(created),
                        state=created.state.value,
                        message="",
                        revision=revision,
                        create_time=now,
                        update_time=now,
                    )
                )
            except IntegrityError:
                raise self._taken(deployment_id) from None
            return created

    @staticmethod
    def _taken(deployment_id: str) -> AlreadyExists:
        return AlreadyExists(f"deployment_id: deployments/{deployment_id} already exists", field="deployment_id")

    def get(self, deployment_id: str) -> Deployment:
        with self._database.reads.begin() as session:
            row = session.execute(_select(deployment_id)).mappings().first()
        if row is None:
            raise _not_found(deployment_id, "name")
        return _deployment(row)

    def list_deployments(self, after: str | None, limit: int) -> list[Deployment]:
        query = sa.select(deployments)
        if after is not None:
            query = query.where(deployments.c.deployment_id > after)
        query = query.order_by(deployments.c.deployment_id).limit(limit)
        with self._database.reads.begin() as session:
            return [_deployment(row) for row in session.execute(query).mappings().all()]

    def list_page(self, page_size: int, page_token: str) -> tuple[list[Deployment], str]:
        """Page size 0 = 50, at most 1000; a token only works with the page size that issued it."""
        size = checked_page_size(page_size)
        pages = Pages(page_token, {"page_size": size})
        items = self.list_deployments(pages.position_str("after"), size + 1)
        return pages.next(items, size, lambda last: {"after": last.deployment_id})

    def update(self, deployment_id: str, changes: DeploymentChanges, expected_etag: str = "") -> Deployment:
        with self._database.writes.begin() as session:
            latest = self._lock_revision(session)
            current = self._locked(session, deployment_id, "deployment.name")
            if expected_etag and expected_etag != current.etag:
                raise Aborted(
                    f"deployment.etag: {shorten(expected_etag)} is not the current etag of "
                    f"deployments/{deployment_id} ({current.etag!r}): it changed since you read it; "
                    "read it again and retry",
                    field="deployment.etag",
                )
            changed = changes.apply(current)
            if changed.same_spec(current):
                # Nothing changes: no revision, so no replica wakes up for it.
                return current
            revision = self._take_revision(session, latest)
            now = _now()
            session.execute(
                sa.update(deployments)
                .where(deployments.c.deployment_id == deployment_id)
                .values(**_spec_values(changed), revision=revision, update_time=now)
            )
            return dataclasses.replace(
                changed, revision=revision, etag=etag_for(deployment_id, revision), update_time=now
            )

    def set_state(
        self, deployment_id: str, state: DeploymentState, message: str = "", *, revision: int | None = None
    ) -> Deployment:
        """Record the data plane's state; keeps ``etag``, ``revision`` and ``update_time``.

        ``revision``, when given, is the deployment revision the caller applied: if the
        deployment changed since, the state would describe an old spec, so it is refused
        with Aborted (the caller reconciles the newer revision instead).
        """
        state = DeploymentState(state)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        with self._database.writes.begin() as session:
            current = self._locked(session, deployment_id, "name")
            if revision is not None and current.revision != revision:
                raise Aborted(
                    f"name: deployments/{deployment_id} is at revision {current.revision}, not {revision}",
                    field="name",
                )
            session.execute(
                sa.update(deployments)
                .where(deployments.c.deployment_id == deployment_id)
                .values(state=state.value, message=message)
            )
            return dataclasses.replace(current, state=state, message=message)

    def delete(self, deployment_id: str) -> None:
        with self._database.writes.begin() as session:
            latest = self._lock_revision(session)
            self._locked(session, deployment_id, "name")
            revision = self._take_revision(session, latest)
            session.execute(sa.delete(deployments).where(deployments.c.deployment_id == deployment_id))
            session.execute(
                sa.insert(tombstones).values(revision=revision, deployment_id=deployment_id, delete_time=_now())
            )

    # ---------------------------------------------------------------- registry alias watch

    def alias_revision(self) -> int:
        """The last registry alias event any replica acted on (0 before the first)."""
        with self._database.reads.begin() as session:
            query = sa.select(serve_state.c.alias_revision).where(serve_state.c.id == 1)
            return int(session.execute(query).scalar_one())

    def record_alias_revision(self, revision: int) -> None:
        """Raise the stored alias revision to ``revision`` (never lowers it)."""
        with self._database.writes.begin() as session:
            session.execute(
                sa.update(serve_state)
                .where(serve_state.c.id == 1, serve_state.c.alias_revision < revision)
                .values(alias_revision=revision)
            )

    # ---------------------------------------------------------------- change feed

    def current_revision(self) -> int:
        with self._database.reads.begin() as session:
            return int(session.execute(sa.select(serve_state.c.revision).where(serve_state.c.id == 1)).scalar_one())

    def changes_since(self, revision: int) -> Changes:
        """Everything in ``(revision, latest]``, where ``latest`` is read first.

        On PostgreSQL each read is its own statement (autocommit reads): reading the
        counter first and bounding the rows by it means a change committed meanwhile is
        left to the next call, never skipped (revisions commit in order). A ``revision``
        above the newest one (a replica that followed another copy of the database)
        replays everything, as 0 does.
        """
        with self._database.reads.begin() as session:
            latest = int(session.execute(sa.select(serve_state.c.revision).where(serve_state.c.id == 1)).scalar_one())
            if latest == revision:
                return Changes([], [], latest)
            # A revision from the future (the database was restored or replaced): replay all.
            window = (revision if revision < latest else 0, latest)
            rows = (
                session.execute(
                    sa.select(deployments)
                    .where(deployments.c.revision > window[0], deployments.c.revision <= window[1])
                    .order_by(deployments.c.revision)
                )
                .mappings()
                .all()
            )
            deleted = set(
                session.execute(
                    sa.select(tombstones.c.deployment_id).where(
                        tombstones.c.revision > window[0], tombstones.c.revision <= window[1]
                    )
                ).scalars()
            )
        changed = [_deployment(row) for row in rows]
        # A row in the window was (re-)created after any tombstone of its id in the window.
        deleted -= {deployment.deployment_id for deployment in changed}
        return Changes(changed, sorted(deleted), latest)
