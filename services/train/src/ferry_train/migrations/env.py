"""Alembic environment: runs on the connection ``store.database`` passes in.

No ``alembic.ini`` is needed: the train service builds its Alembic ``Config`` in code and
puts an open connection (inside a transaction) in ``config.attributes["connection"]``.
To write a new migration during development::

    cd services/train/src/ferry_train
    python -c "from alembic.config import Config; from alembic import command; \
c = Config(); c.set_main_option('script_location', 'migrations'); \
c.set_main_option('sqlalchemy.url', 'sqlite:////tmp/train.db'); command.upgrade(c, 'head'); \
command.revision(c, 'describe the change', autogenerate=True)"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from ferry_train.store.rows import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=conn,
        target_metadata=metadata,
        version_table=config.attributes.get("version_table", "alembic_version"),
        render_as_batch=conn.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
