"""Alembic migrations of serve's database (version table ``alembic_version_serve``)."""
