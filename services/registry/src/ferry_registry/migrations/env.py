"""Alembic environment of the registry database: ``ferry_common.database.run_alembic_environment``."""

from ferry_common.database import run_alembic_environment
from ferry_registry.store.rows import metadata

run_alembic_environment(metadata)
