"""Alembic environment of the monitor database: ``ferry_common.database.run_alembic_environment``."""

from ferry_common.database import run_alembic_environment
from ferry_monitor.store.rows import metadata

run_alembic_environment(metadata, default_version_table="alembic_version_monitor")
