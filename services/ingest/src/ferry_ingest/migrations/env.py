"""Alembic environment of the ingest database (run programmatically at start)."""

from alembic import context

from ferry_ingest.store.rows import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=context.config.attributes.get("version_table", "alembic_version_ingest"),
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
