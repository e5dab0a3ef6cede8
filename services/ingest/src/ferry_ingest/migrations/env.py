"""Alembic environment of the ingest database: ``ferry_common.database.run_alembic_environment``."""

from ferry_common.database import run_alembic_environment
from ferry_ingest.store.rows import Base

run_alembic_environment(Base.metadata, "alembic_version_ingest")
