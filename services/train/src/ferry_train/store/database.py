"""Train's database: ferry_common.database with train's migrations and version table."""

from __future__ import annotations

import pathlib

from ferry_common.database import Database, DatabaseOptions
from ferry_common.database import open_database as _open
from ferry_train.config import TrainConfig

__all__ = ["HEAD_REVISION", "Database", "open_database"]

_MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key: concurrent train processes migrate one at a time.
_MIGRATION_LOCK_KEY = 0x6665727279_03
# The newest migration: a database already there starts without loading Alembic, so this must
# move with every new migration (tests/test_migration_heads.py checks it).
HEAD_REVISION = "0002_package_versions"


def open_database(config: TrainConfig) -> Database:
    """Open (and migrate) train's database (blocking).

    Raises:
        Unavailable: the database cannot be reached; the message names it.
    """
    options = DatabaseOptions(
        service="train",
        migrations=_MIGRATIONS,
        lock_key=_MIGRATION_LOCK_KEY,
        version_table="alembic_version_train",
        head_revision=HEAD_REVISION,
        threads=config.db_threads,
    )
    return _open(config.database_url, options)
