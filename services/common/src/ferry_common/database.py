"""SQLAlchemy plumbing every stateful service shares: one way to open, migrate and use a database.

:func:`open_database` gives a :class:`Database`: the engine, transaction-scoped session
factories for reads and writes, and a :class:`DatabaseRunner` that runs blocking store
calls off the event loop and turns a lost database (``OperationalError``,
``InterfaceError``: connection refused, server gone, SQLite busy past its timeout) into
:class:`~ferry_common.errors.Unavailable`, never INTERNAL.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys,
and transactions are begun explicitly: ``BEGIN IMMEDIATE`` for connections carrying
the :data:`WRITE` execution option (they take the write lock up front, so a
read-then-write transaction never fails half way under WAL), a plain ``BEGIN``
otherwise. Inside one process, SQLite writes are handed to one writer thread, so they
queue in memory instead of sleeping in SQLite's busy handler.

PostgreSQL writes use ``READ COMMITTED`` with explicit row locks taken by each store;
reads run on a second pool in autocommit mode (a read is one statement: a transaction
would only add round trips).

Migrations are each service's own Alembic scripts (``<package>/migrations``), applied
at start under a PostgreSQL advisory lock so that concurrent starts migrate once.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event, exc, inspect, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from ferry_common.errors import Unavailable
from ferry_common.logs import get_logger

__all__ = [
    "WRITE",
    "Database",
    "DatabaseOptions",
    "DatabaseRunner",
    "configure_sqlite",
    "open_database",
    "run_alembic_environment",
    "run_migrations",
    "writer",
]

_log = get_logger("ferry.database")
P = ParamSpec("P")
R = TypeVar("R")

WRITE = "ferry_write"


def configure_sqlite(engine: Engine, *, busy_timeout_ms: int, synchronous: str | None = None) -> None:
    """Install the connection pragmas and explicit BEGIN on a SQLite engine."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun explicitly below: pysqlite's own handling would defer
        # BEGIN and make read-then-write transactions fail under WAL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        if synchronous is not None:
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE) else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine, with connections that begin write transactions."""
    return engine.execution_options(**{WRITE: True})


def run_migrations(
    engine: Engine, script_location: pathlib.Path, lock_key: int, version_table: str = "alembic_version"
) -> None:
    """Bring the schema to the newest migration under ``script_location`` (blocking)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    with writer(engine).connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(lock_key)})")
        config.attributes["connection"] = connection
        config.attributes["version_table"] = version_table
        command.upgrade(config, "head")


class DatabaseRunner:
    """Runs blocking store calls off the event loop, in threads reused across calls.

    Reads go to a pool of ``threads``; writes go to one dedicated thread on SQLite
    (the database has one writer anyway) and to the same pool on PostgreSQL. A lost
    database becomes :class:`Unavailable` naming the service's database.
    """

    def __init__(self, service: str, threads: int, single_writer: bool) -> None:
        self._service = service
        self._reads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"ferry-{service}-db")
        self._writes = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ferry-{service}-writer")
            if single_writer
            else self._reads
        )

    async def read(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a read in the pool."""
        return await self._run(self._reads, fn, *args, **kwargs)

    async def write(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a write transaction (on SQLite: on the one writer thread)."""
        return await self._run(self._writes, fn, *args, **kwargs)

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        call = functools.partial(self.call, fn, *args, **kwargs)
        return await loop.run_in_executor(pool, call)

    def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` in the calling thread, translating a lost database into :class:`Unavailable`."""
        try:
            return fn(*args, **kwargs)
        except exc.OperationalError as error:
            # Connection refused, server gone, SQLite busy past its timeout: retryable.
            _log.warning("database unavailable", service=self._service, error=str(error.orig))
            raise Unavailable(
                f"{self._service} database unavailable: {type(error.orig).__name__}: {str(error.orig).strip()[:300]}"
            ) from None
        except exc.InterfaceError as error:
            raise Unavailable(f"{self._service} database unavailable: {type(error.orig).__name__}") from None

    def shutdown(self) -> None:
        self._writes.shutdown(wait=True)
        self._reads.shutdown(wait=True)


@dataclass(frozen=True)
class DatabaseOptions:
    """How a service opens its database.

    Attributes:
        service: ``registry``, ``ingest``... (names the database in messages and threads).
        migrations: the service's Alembic script directory.
        lock_key: ``pg_advisory_xact_lock`` key: concurrent starts migrate one at a time.
        version_table: Alembic's version table (distinct per service when they share a database).
        head_revision: the newest migration; a database already there starts without loading Alembic.
        threads: threads (and pooled connections) for reads.
        sqlite_busy_timeout_ms: how long a SQLite writer waits for another process's lock.
        sqlite_synchronous: ``PRAGMA synchronous`` (``FULL``: every acknowledged commit is on disk).
        autocommit_reads: PostgreSQL reads on an autocommit pool (one statement each); a
            store whose reads stream through server-side cursors needs transactions (False).
    """

    service: str
    migrations: pathlib.Path
    lock_key: int
    version_table: str = "alembic_version"
    head_revision: str | None = None
    threads: int = 4
    sqlite_busy_timeout_ms: int = 30_000
    sqlite_synchronous: str | None = "FULL"
    autocommit_reads: bool = True


@dataclass
class Database:
    """An engine, its transaction-scoped session factories and the runner."""

    engine: Engine
    read_engine: Engine
    reads: sessionmaker[Session]
    writes: sessionmaker[Session]
    runner: DatabaseRunner

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        """Wait for running calls, then close every pooled connection."""
        self.runner.shutdown()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def _revision(engine: Engine, version_table: str) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table(version_table):
            return None
        value = connection.execute(text(f"SELECT version_num FROM {version_table}")).scalar()
        return str(value) if value is not None else None


def open_database(url: str, options: DatabaseOptions) -> Database:
    """Create the engines for ``url`` and bring the schema to the newest migration (blocking).

    Raises:
        Unavailable: the database cannot be reached; the message names
            ``FERRY_<SERVICE>_DATABASE_URL`` and the URL without its password.
    """
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if parsed.database and parsed.database != ":memory:":
            pathlib.Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            pool_size=options.threads + 1,
            max_overflow=2,
            connect_args={"timeout": options.sqlite_busy_timeout_ms / 1000, "check_same_thread": False},
        )
        configure_sqlite(engine, busy_timeout_ms=options.sqlite_busy_timeout_ms, synchronous=options.sqlite_synchronous)
        read_engine = engine
    else:
        engine = create_engine(parsed, pool_size=options.threads, max_overflow=4, pool_recycle=1800)
        read_engine = (
            create_engine(
                parsed, pool_size=options.threads, max_overflow=4, pool_recycle=1800, isolation_level="AUTOCOMMIT"
            )
            if options.autocommit_reads
            else engine
        )
    try:
        if options.head_revision is None or _revision(engine, options.version_table) != options.head_revision:
            run_migrations(engine, options.migrations, options.lock_key, options.version_table)
    except (exc.OperationalError, exc.InterfaceError) as error:
        engine.dispose()
        if read_engine is not engine:
            read_engine.dispose()
        raise Unavailable(
            f"FERRY_{options.service.upper()}_DATABASE_URL {parsed.render_as_string(hide_password=True)!r}: "
            f"cannot open the database ({type(error.orig).__name__}: {str(error.orig).strip()})"
        ) from None
    return Database(
        engine=engine,
        read_engine=read_engine,
        reads=sessionmaker(bind=read_engine, expire_on_commit=False, autoflush=False),
        writes=sessionmaker(bind=writer(engine), expire_on_commit=False, autoflush=False),
        runner=DatabaseRunner(options.service, options.threads, single_writer=sqlite),
    )


def run_alembic_environment(metadata: Any, default_version_table: str = "alembic_version") -> None:
    """The body of every service's ``migrations/env.py`` (Alembic calls it).

    At start, :func:`run_migrations` puts an open connection (inside a transaction) and the
    version table in ``config.attributes``. Without one (writing a migration during
    development), it connects to ``sqlalchemy.url``::

        cd services/<svc>/src/ferry_<svc>
        python -c "from alembic.config import Config; from alembic import command; \\
        c = Config(); c.set_main_option('script_location', 'migrations'); \\
        c.set_main_option('sqlalchemy.url', 'sqlite:////tmp/x.db'); command.upgrade(c, 'head'); \\
        command.revision(c, 'describe the change', autogenerate=True)"
    """
    from alembic import context

    config = context.config

    def run(connection: Any) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=config.attributes.get("version_table", default_version_table),
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as fresh:
        run(fresh)
    engine.dispose()
