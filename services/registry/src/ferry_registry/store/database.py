"""Engine, sessions, migrations and the threads database work runs on.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` and a busy
timeout. Python's sqlite3 module is told to stay out of transaction control so that
every write transaction starts with ``BEGIN IMMEDIATE``: it takes the database's write
lock up front, so a compare-and-set reads the state it will write against and two
writers never deadlock upgrading read locks. Inside this process, SQLite writes are
handed to one writer thread, so they queue in memory instead of sleeping in SQLite's
busy handler; the busy timeout only matters when another process holds the lock.

PostgreSQL writes use ``READ COMMITTED`` with explicit row locks (``SELECT ... FOR
UPDATE``) taken by the store in a fixed order; reads run in autocommit mode.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

from ferry_common.database import configure_sqlite, run_migrations, writer
from ferry_common.errors import Unavailable
from ferry_common.logs import get_logger
from ferry_registry.config import RegistryConfig

__all__ = ["Database", "DatabaseRunner", "open_database"]

_log = get_logger("ferry.registry.database")
_MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key: concurrent registry processes migrate one at a time.
_MIGRATION_LOCK_KEY = 0x6665727279_01

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseRunner:
    """Runs blocking store calls off the event loop, in threads reused across calls.

    Reads go to a pool of ``threads``; writes go to one dedicated thread on SQLite
    (the database has one writer anyway) and to the same pool on PostgreSQL.
    """

    def __init__(self, threads: int, single_writer: bool) -> None:
        self._reads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ferry-registry-db")
        self._writes = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-registry-writer")
            if single_writer
            else self._reads
        )

    async def read(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a read in the pool."""
        return await self._run(self._reads, fn, *args, **kwargs)

    async def write(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a write transaction."""
        return await self._run(self._writes, fn, *args, **kwargs)

    @staticmethod
    async def _run(pool: ThreadPoolExecutor, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        call = functools.partial(_translate_errors, fn, *args, **kwargs)
        return await loop.run_in_executor(pool, call)

    def shutdown(self) -> None:
        self._writes.shutdown(wait=True)
        self._reads.shutdown(wait=True)


def _translate_errors(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    try:
        return fn(*args, **kwargs)
    except exc.OperationalError as error:
        # Connection refused, server gone, SQLite busy past its timeout: retryable.
        _log.warning("database unavailable", error=str(error.orig))
        raise Unavailable(f"registry database unavailable: {type(error.orig).__name__}: {error.orig}") from None
    except exc.InterfaceError as error:
        raise Unavailable(f"registry database unavailable: {type(error.orig).__name__}") from None


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
        self.read_engine.dispose()


def _sqlite_engine(config: RegistryConfig) -> Engine:
    url = make_url(config.database_url)
    if url.database and url.database != ":memory:":
        pathlib.Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=config.db_threads + 1,
        max_overflow=2,
        connect_args={"timeout": config.sqlite_busy_timeout_ms / 1000},
    )

    configure_sqlite(engine, busy_timeout_ms=config.sqlite_busy_timeout_ms, synchronous=config.sqlite_synchronous)
    return engine


def _postgres_engine(config: RegistryConfig) -> Engine:
    return create_engine(
        config.database_url,
        pool_size=config.db_threads,
        max_overflow=4,
        pool_recycle=1800,
        pool_pre_ping=False,
    )


def _read_engine(engine: Engine, config: RegistryConfig) -> Engine:
    """The engine reads use.

    On PostgreSQL, a second pool in autocommit mode: every read the store makes is one
    statement on its success path (a version arrives with its alias ids in the same
    row), so a transaction would only add a BEGIN and a COMMIT round trip. On SQLite
    the writer's engine serves reads too (deferred BEGIN, local and cheap).
    """
    if engine.dialect.name != "postgresql":
        return engine
    return create_engine(
        config.database_url,
        pool_size=config.db_threads,
        max_overflow=4,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT",
    )


def _migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration shipped in the package."""
    run_migrations(engine, _MIGRATIONS, _MIGRATION_LOCK_KEY)


def open_database(config: RegistryConfig) -> Database:
    """Create the engine for ``config.database_url`` and migrate it (blocking).

    Raises:
        Unavailable: the database cannot be reached; the message names it.
    """
    url = make_url(config.database_url)
    engine = _sqlite_engine(config) if url.get_backend_name() == "sqlite" else _postgres_engine(config)
    try:
        _migrate(engine)
    except (exc.OperationalError, exc.InterfaceError) as error:
        engine.dispose()
        raise Unavailable(
            f"FERRY_REGISTRY_DATABASE_URL {url.render_as_string(hide_password=True)!r}: cannot open the database "
            f"({type(error.orig).__name__}: {str(error.orig).strip()})"
        ) from None
    _log.debug("database ready", url=url.render_as_string(hide_password=True))
    read_engine = _read_engine(engine, config)
    return Database(
        engine=engine,
        read_engine=read_engine,
        reads=sessionmaker(bind=read_engine, expire_on_commit=False, autoflush=False),
        writes=sessionmaker(bind=writer(engine), expire_on_commit=False, autoflush=False),
        runner=DatabaseRunner(config.db_threads, single_writer=engine.dialect.name == "sqlite"),
    )
