"""The registry's database: ferry_common.database with the registry's migrations and tunables.

SQLite (the embedded default) runs with ``synchronous=FULL`` by default; every write
transaction starts with ``BEGIN IMMEDIATE``, so a compare-and-set reads the state it
will write against and two writers never deadlock upgrading read locks. PostgreSQL
writes use ``READ COMMITTED`` with explicit row locks (``SELECT ... FOR UPDATE``)
taken by the store in a fixed order; reads run in autocommit mode.
"""

from __future__ import annotations

import pathlib

from ferry_common.database import Database, DatabaseOptions, DatabaseRunner
from ferry_common.database import open_database as _open
from ferry_registry.config import RegistryConfig

__all__ = ["Database", "DatabaseRunner", "open_database"]

_MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key: concurrent registry processes migrate one at a time.
_MIGRATION_LOCK_KEY = 0x6665727279_01


def open_database(config: RegistryConfig) -> Database:
    """Open (and migrate) the registry's database (blocking).

    Raises:
        Unavailable: the database cannot be reached; the message names it.
    """
    options = DatabaseOptions(
        service="registry",
        migrations=_MIGRATIONS,
        lock_key=_MIGRATION_LOCK_KEY,
        threads=config.db_threads,
        sqlite_busy_timeout_ms=config.sqlite_busy_timeout_ms,
        sqlite_synchronous=config.sqlite_synchronous,
    )
    return _open(config.database_url, options)
