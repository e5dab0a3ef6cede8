"""SQLAlchemy plumbing every stateful service shares: SQLite setup and migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys,
and transactions are begun explicitly: ``BEGIN IMMEDIATE`` for connections carrying
the :data:`WRITE` execution option (they take the write lock up front, so a
read-then-write transaction never fails half way under WAL), a plain ``BEGIN``
otherwise. Migrations are each service's own Alembic scripts, applied at start under
a PostgreSQL advisory lock so that concurrent starts migrate once.
"""

from __future__ import annotations

import pathlib
from typing import Any

from sqlalchemy import Engine, event

__all__ = ["WRITE", "configure_sqlite", "run_migrations", "writer"]

WRITE = "ferry_write"


def configure_sqlite(engine: Engine, *, busy_timeout_ms: int, synchronous: str | None = None) -> None:
    """Install the connection pragmas and explicit BEGIN on a SQLite engine."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun explicitly below: pysqlite's own handling would defer
        # BEGIN and make read-then-write transactions fail under WAL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        if synchronous is not None:
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE) else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine, with connections that begin write transactions."""
    return engine.execution_options(**{WRITE: True})


def run_migrations(engine: Engine, script_location: pathlib.Path, lock_key: int) -> None:
    """Bring the schema to the newest migration under ``script_location`` (blocking)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    with writer(engine).connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(lock_key)})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
