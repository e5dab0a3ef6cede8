"""Alembic migrations of the registry database, run at startup by ``store.database``."""
