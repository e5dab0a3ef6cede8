"""Alembic environment of the train database: ``ferry_common.database.run_alembic_environment``."""

from ferry_common.database import run_alembic_environment
from ferry_train.store.rows import metadata

run_alembic_environment(metadata)
