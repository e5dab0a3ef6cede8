"""SQLAlchemy implementation of :class:`~ferry_ingest.store.DatasetStore`.

SQLite (the embedded default, WAL mode) and PostgreSQL. Migrations are Alembic
scripts shipped in this package and applied at start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import pathlib
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import func, inspect, select, text
from sqlalchemy.orm import Session

from ferry_common.database import Database, DatabaseOptions, DatabaseRunner
from ferry_common.database import open_database as _open_database
from ferry_common.errors import NotFound
from ferry_ingest.domain import (
    DataFormat,
    Dataset,
    DatasetVersion,
    Lineage,
    SchemaField,
    Split,
    VersionDraft,
)
from ferry_ingest.recipe import Recipe
from ferry_ingest.store.base import SweepObjects, WriteObjects
from ferry_ingest.store.rows import DatasetRow, PendingCommitRow, VersionRow

__all__ = ["HEAD_REVISION", "SqlDatasetStore", "open_database"]

_MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations"
_PG_MIGRATION_LOCK = 0x66657279  # advisory lock id: one migrator at a time
_VERSION_TABLE = "alembic_version_ingest"
# The newest migration (tests check it against the scripts): a database already there
# starts without loading Alembic at all, which keeps the process smaller.
HEAD_REVISION = "0002"


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def open_database(url: str) -> Database:
    """Open (and migrate) the ingest database (blocking).

    Raises:
        Unavailable: the database cannot be reached (the message names the URL, without password).
    """
    options = DatabaseOptions(
        service="ingest",
        migrations=_MIGRATIONS,
        lock_key=_PG_MIGRATION_LOCK,
        version_table=_VERSION_TABLE,
        head_revision=HEAD_REVISION,
        # Durability as before: WAL's default (NORMAL) for the embedded default; a
        # version is only acknowledged once its objects are complete anyway.
        sqlite_synchronous=None,
        # ListDatasets streams rows through a server-side cursor (yield_per).
        autocommit_reads=False,
    )
    return _open_database(url, options)


class SqlDatasetStore:
    """Metadata in a SQL database reached through SQLAlchemy.

    Blocking: the service calls it through the database's
    :class:`~ferry_common.database.DatabaseRunner`, which turns a lost database into
    UNAVAILABLE.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    @classmethod
    def open(cls, url: str) -> SqlDatasetStore:
        """Connect, apply the migrations, and return the store."""
        return cls(open_database(url))

    @property
    def runner(self) -> DatabaseRunner:
        return self._database.runner

    def revision(self) -> str | None:
        """The migration the database is at (None: not initialised)."""
        with self._database.engine.connect() as connection:
            if not inspect(connection).has_table(_VERSION_TABLE):
                return None
            return connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar()

    def close(self) -> None:
        self._database.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._database.reads() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._database.writes() as session, session.begin():
            yield session

    # ------------------------------------------------------------------- reads

    def next_version(self, dataset_id: str) -> int:
        with self._read() as session:
            latest = session.scalar(select(DatasetRow.latest_version).where(DatasetRow.id == dataset_id))
        return (latest or 0) + 1

    def find_version(self, dataset_id: str, *, sha256: str = "", request_id: str = "") -> DatasetVersion | None:
        with self._read() as session:
            row = self._find(session, dataset_id, sha256, request_id)
            return _version(row) if row is not None else None

    @staticmethod
    def _find(session: Session, dataset_id: str, sha256: str, request_id: str) -> VersionRow | None:
        for column, value in ((VersionRow.request_id, request_id), (VersionRow.sha256, sha256)):
            if value:
                row = session.scalar(
                    select(VersionRow)
                    .where(VersionRow.dataset_id == dataset_id, column == value)
                    .order_by(VersionRow.version)
                    .limit(1)
                )
                if row is not None:
                    return row
        return None

    def get_dataset(self, dataset_id: str) -> Dataset:
        with self._read() as session:
            row = session.get(DatasetRow, dataset_id)
            if row is None:
                raise NotFound(f"dataset {dataset_id!r} not found", field="name")
            return _dataset(row)

    def list_datasets(
        self, page_size: int, after: str | None, labels: Mapping[str, str]
    ) -> tuple[list[Dataset], str | None]:
        query = select(DatasetRow).order_by(DatasetRow.id)
        if after is not None:
            query = query.where(DatasetRow.id > after)
        page: list[Dataset] = []
        with self._read() as session:
            for row in session.scalars(query.execution_options(yield_per=500)):
                if all(row.labels.get(k) == v for k, v in labels.items()):
                    if len(page) == page_size:
                        return page, page[-1].dataset_id
                    page.append(_dataset(row))
        return page, None

    def get_version(self, dataset_id: str, version: int | None) -> DatasetVersion:
        with self._read() as session:
            if version is None:
                row = session.scalar(
                    select(VersionRow)
                    .where(VersionRow.dataset_id == dataset_id)
                    .order_by(VersionRow.version.desc())
                    .limit(1)
                )
            else:
                row = session.get(VersionRow, (dataset_id, version))
            if row is None:
                raise NotFound(self._missing(session, dataset_id, version), field="name")
            return _version(row)

    @staticmethod
    def _missing(session: Session, dataset_id: str, version: int | None) -> str:
        latest = session.scalar(select(func.max(VersionRow.version)).where(VersionRow.dataset_id == dataset_id))
        if session.get(DatasetRow, dataset_id) is None:
            return f"dataset {dataset_id!r} not found"
        if version is None or latest is None:
            return f"dataset {dataset_id!r} has no versions"
        return f"dataset {dataset_id!r}: version {version} not found (latest is {latest})"

    def list_versions(
        self, dataset_id: str, page_size: int, before: int | None
    ) -> tuple[list[DatasetVersion], int | None]:
        with self._read() as session:
            if session.get(DatasetRow, dataset_id) is None:
                raise NotFound(f"dataset {dataset_id!r} not found", field="parent")
            query = select(VersionRow).where(VersionRow.dataset_id == dataset_id)
            if before is not None:
                query = query.where(VersionRow.version < before)
            rows = list(session.scalars(query.order_by(VersionRow.version.desc()).limit(page_size + 1)))
        page = [_version(row) for row in rows[:page_size]]
        return page, (page[-1].version if len(rows) > page_size else None)

    # ------------------------------------------------------------------ writes

    def commit_version(self, draft: VersionDraft, write_objects: WriteObjects) -> tuple[DatasetVersion, bool]:
        now = dt.datetime.now(dt.UTC)
        with self._write() as session:
            dataset = self._lock_dataset(session, draft, now)
            existing = self._find(session, draft.dataset_id, draft.sha256, draft.request_id)
            if existing is not None:
                return _version(existing), False
            number = dataset.latest_version + 1
            objects = write_objects(number)
            data = objects["data.parquet"]
            row = VersionRow(
                dataset_id=draft.dataset_id,
                version=number,
                sha256=draft.sha256,
                request_id=draft.request_id,
                row_count=draft.row_count,
                size_bytes=data.size_bytes,
                schema_fields=[{"name": f.name, "type": f.type, "nullable": f.nullable} for f in draft.schema],
                uri=data.uri,
                splits=[
                    {"name": name, "row_count": rows, "uri": objects[f"splits/{name}.parquet"].uri}
                    for name, rows in draft.split_rows
                ],
                lineage=_lineage_json(draft.lineage),
                description=draft.description,
                labels=dict(draft.labels),
                create_time=now,
            )
            session.add(row)
            dataset.latest_version = number
            dataset.update_time = now
        return _version(row), True

    def _lock_dataset(self, session: Session, draft: VersionDraft, now: dt.datetime) -> DatasetRow:
        dialect = session.get_bind().dialect.name
        values = {
            "id": draft.dataset_id,
            "description": draft.description,
            "labels": dict(draft.labels),
            "latest_version": 0,
            "create_time": now,
            "update_time": now,
        }
        if dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            session.execute(insert(DatasetRow).values(**values).on_conflict_do_nothing(index_elements=["id"]))
        elif session.get(DatasetRow, draft.dataset_id) is None:
            session.add(DatasetRow(**values))
            session.flush()
        row = session.scalar(select(DatasetRow).where(DatasetRow.id == draft.dataset_id).with_for_update())
        assert row is not None
        session.refresh(row)
        return row

    # ------------------------------------------------------- pending commits

    def begin_pending(self, dataset_id: str) -> str:
        token = uuid.uuid4().hex
        with self._write() as session:
            session.add(PendingCommitRow(id=token, dataset_id=dataset_id, create_time=dt.datetime.now(dt.UTC)))
        return token

    def end_pending(self, token: str) -> None:
        with self._write() as session:
            row = session.get(PendingCommitRow, token)
            if row is not None:
                session.delete(row)

    def list_pending(self) -> list[tuple[str, str, dt.datetime]]:
        with self._read() as session:
            rows = session.scalars(select(PendingCommitRow).order_by(PendingCommitRow.create_time))
            return [(row.id, row.dataset_id, _utc(row.create_time)) for row in rows]

    def sweep_dataset(self, dataset_id: str, sweep: SweepObjects) -> list[int]:
        now = dt.datetime.now(dt.UTC)
        placeholder = VersionDraft(dataset_id=dataset_id, sha256="", row_count=0, schema=(), lineage=Lineage())
        with self._write() as session:
            # The same lock a commit holds while it writes objects: no commit of this
            # dataset is between its objects and its row while the sweep runs.
            dataset = self._lock_dataset(session, placeholder, now)
            committed = set(session.scalars(select(VersionRow.version).where(VersionRow.dataset_id == dataset_id)))
            removed = sweep(committed)
            if dataset.latest_version == 0:  # the row was created for the lock only
                session.delete(dataset)
        return removed

    def delete_version(self, dataset_id: str, version: int) -> DatasetVersion:
        with self._write() as session:
            row = session.get(VersionRow, (dataset_id, version))
            if row is None:
                raise NotFound(self._missing(session, dataset_id, version), field="name")
            found = _version(row)
            session.delete(row)
        return found


def _lineage_json(lineage: Lineage) -> dict[str, Any]:
    return {
        "parent": lineage.parent,
        "recipe": lineage.recipe.to_json_dict() if lineage.recipe is not None else None,
        "source_uri": lineage.source_uri,
        "source_query": lineage.source_query,
        "source_format": lineage.source_format.value if lineage.source_format is not None else None,
    }


def _lineage(data: Mapping[str, Any]) -> Lineage:
    return Lineage(
        parent=data.get("parent", ""),
        recipe=Recipe.from_json_dict(data["recipe"]) if data.get("recipe") else None,
        source_uri=data.get("source_uri", ""),
        source_query=data.get("source_query", ""),
        source_format=DataFormat(data["source_format"]) if data.get("source_format") else None,
    )


def _dataset(row: DatasetRow) -> Dataset:
    return Dataset(
        dataset_id=row.id,
        description=row.description,
        labels=dict(row.labels),
        latest_version=row.latest_version,
        create_time=_utc(row.create_time),
        update_time=_utc(row.update_time),
    )


def _version(row: VersionRow) -> DatasetVersion:
    return DatasetVersion(
        dataset_id=row.dataset_id,
        version=row.version,
        sha256=row.sha256,
        row_count=row.row_count,
        size_bytes=row.size_bytes,
        schema=tuple(SchemaField(f["name"], f["type"], f["nullable"]) for f in row.schema_fields),
        uri=row.uri,
        splits=tuple(Split(s["name"], s["row_count"], s["uri"]) for s in row.splits),
        lineage=_lineage(row.lineage),
        description=row.description,
        labels=dict(row.labels),
        create_time=_utc(row.create_time),
        request_id=row.request_id,
    )
