"""Monitor's database: ferry_common.database with monitor's migrations and version table."""

from __future__ import annotations

import pathlib

from ferry_common.database import Database, DatabaseOptions
from ferry_common.database import open_database as _open

__all__ = ["HEAD_REVISION", "VERSION_TABLE", "Database", "open_database"]

_MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key: concurrent monitor starts migrate one at a time.
_MIGRATION_LOCK_KEY = 0x6665727279_05
VERSION_TABLE = "alembic_version_monitor"
HEAD_REVISION = "0005_accuracy_states"


def open_database(url: str, *, threads: int = 4) -> Database:
    """Open (and migrate) monitor's database: a SQLite file or PostgreSQL by SQLAlchemy URL (blocking).

    SQLite runs with ``synchronous=FULL``: a committed Export batch is on disk.

    Raises:
        Unavailable: the database cannot be reached; the message names
            ``FERRY_MONITOR_DATABASE_URL`` and the URL without its password.
    """
    options = DatabaseOptions(
        service="monitor",
        migrations=_MIGRATIONS,
        lock_key=_MIGRATION_LOCK_KEY,
        version_table=VERSION_TABLE,
        head_revision=HEAD_REVISION,
        threads=threads,
    )
    return _open(url, options)
