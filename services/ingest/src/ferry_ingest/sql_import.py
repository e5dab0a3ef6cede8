"""Imports from SQL databases: one read-only SELECT/WITH, streamed in batches.

Safety rules (checked in this order):

1. The query is one statement beginning with ``SELECT`` or ``WITH`` (after
   comments); anything else, or a second statement after a ``;``, is refused with
   INVALID_ARGUMENT before any connection is made. String literals, quoted
   identifiers, dollar quotes and comments are skipped while looking.
2. It runs inside a read-only transaction: PostgreSQL ``SET TRANSACTION READ ONLY``,
   SQLite ``PRAGMA query_only``, MySQL/MariaDB ``SET TRANSACTION READ ONLY``; a
   dialect where that fails is refused. So a write hidden in a data-modifying CTE
   (``WITH x AS (DELETE ... RETURNING *) SELECT ...``), ``SELECT ... INTO`` or
   ``nextval()`` fails and changes nothing.
3. Rows are streamed with a server-side cursor (``stream_results``) and fetched
   ``batch_rows`` at a time, never all at once.
4. A server-side time limit bounds each statement: PostgreSQL ``SET LOCAL
   statement_timeout`` inside the read-only transaction (so the cursor's DECLARE and
   each FETCH), SQLite a progress handler that interrupts a fetch running longer.
   Hitting it is RESOURCE_EXHAUSTED naming ``sql.query``.
5. SQLite files are opened read-only (``mode=ro``), so nothing can create or change them.

Which database is read (an operator's named connection, or a raw URL where the
operator allows them) is decided by the service; :func:`raw_url_problem` says why a
raw URL would reach the server's own files or sockets.

Types come from PostgreSQL's column type OIDs where available, otherwise from the
first non-null value of each column in the first batch. NUMERIC/DECIMAL become
double; JSON values become their JSON text; unknown types become their text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import pathlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import pyarrow as pa
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ferry_common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from ferry_common.names import shorten
from ferry_ingest.parquet_output import ParquetOutput, check_column_names
from ferry_profile import Profile

__all__ = ["SqlImport", "check_query", "parse_url", "raw_url_problem"]

_FIRST_WORD = re.compile(r"[A-Za-z_]+")
# Dialects that only talk to a server over the network; others (sqlite, duckdb, ...)
# open files of the machine they run on.
_NETWORK_BACKENDS = frozenset({"postgresql", "mysql", "mariadb", "mssql", "oracle"})
# URL query parameters a raw URL may carry; the rest can name local files or sockets
# (host=/var/run/postgresql, passfile, service, sslkey, read_default_file, unix_socket...).
_SAFE_QUERY_KEYS = frozenset({"sslmode", "connect_timeout", "application_name", "charset"})
_HOST = re.compile(r"[A-Za-z0-9._:\[\],-]+")  # names and addresses; no socket path, not even %2F-encoded
_PG_QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout
_SQLITE_CHECK_EVERY = 10_000  # virtual machine instructions between two looks at the clock
_PG_TYPES = {
    "int2": pa.int64(),
    "int4": pa.int64(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "float4": pa.float64(),
    "float8": pa.float64(),
    "numeric": pa.float64(),
    "money": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "bytea": pa.binary(),
}


def _skip_quoted(query: str, start: int) -> int:
    """Index after the literal, identifier, comment or dollar quote opening at ``start``."""
    char = query[start]
    if query.startswith("--", start):
        end = query.find("\n", start)
        return len(query) if end < 0 else end + 1
    if query.startswith("/*", start):
        end = query.find("*/", start + 2)
        return len(query) if end < 0 else end + 2
    if char in "'\"`":
        index = start + 1
        while index < len(query):
            if query[index] == char:
                if query.startswith(char * 2, index):  # doubled quote = escaped
                    index += 2
                    continue
                return index + 1
            index += 1
        return len(query)
    match = re.match(r"\$[A-Za-z_0-9]*\$", query[start:])
    if match:
        end = query.find(match[0], start + len(match[0]))
        return len(query) if end < 0 else end + len(match[0])
    return start + 1


def check_query(query: str, field: str = "sql.query") -> str:
    """The query without its trailing ``;``, if it is one SELECT or WITH statement.

    Raises:
        InvalidArgument: empty, not a SELECT/WITH, or more than one statement.
    """
    index, first, end = 0, None, None
    while index < len(query):
        char = query[index]
        if char.isspace():
            index += 1
        elif query.startswith(("--", "/*"), index):
            index = _skip_quoted(query, index)
        elif end is not None:
            raise InvalidArgument(f"{field}: only one statement is allowed (found text after ';')", field=field)
        elif char == ";":
            end = index
            index += 1
        else:
            if first is None:
                match = _FIRST_WORD.match(query, index)
                first = match[0].upper() if match else char
            index = _skip_quoted(query, index)
    if first is None:
        raise InvalidArgument(f"{field}: the query is empty", field=field)
    if first not in ("SELECT", "WITH"):
        raise InvalidArgument(
            f"{field}: only SELECT or WITH queries can be imported (the query starts with {first})", field=field
        )
    return query[:end].strip() if end is not None else query.strip()


def parse_url(url: str, field: str = "sql.url") -> URL:
    """A SQLAlchemy URL (INVALID_ARGUMENT when malformed)."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise InvalidArgument(
            f"{field}: {shorten(url)} is not a SQLAlchemy URL such as postgresql+psycopg://host/db", field=field
        ) from None


def raw_url_problem(url: URL) -> str | None:
    """Why a caller's own URL could make the server read its own files or sockets (None: it cannot).

    Only network databases with a host name qualify, with no query parameters beyond
    a few harmless ones.
    """
    backend = url.get_backend_name()
    if backend not in _NETWORK_BACKENDS:
        return (
            f"{backend} URLs are not accepted (sqlite and other file databases only through a named "
            f"connection; URLs may name {', '.join(sorted(_NETWORK_BACKENDS))})"
        )
    if not url.host or not _HOST.fullmatch(url.host):
        return "the URL must name a database host (a local socket is not allowed)"
    unsafe = sorted(set(url.query) - _SAFE_QUERY_KEYS)
    if unsafe:
        return (
            f"query parameter(s) {', '.join(unsafe)} are not allowed (allowed: {', '.join(sorted(_SAFE_QUERY_KEYS))})"
        )
    return None


class _Deadline:
    """A clock a SQLite progress handler consults: true once the current fetch runs too long."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.restart()

    def restart(self) -> None:
        self._until = time.monotonic() + self.seconds

    def __call__(self) -> bool:
        if time.monotonic() > self._until:
            self.expired = True
        return self.expired


def _read_only(connection: Connection, field: str) -> None:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.exec_driver_sql("PRAGMA query_only = ON")
        return
    try:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
    except DBAPIError as exc:
        raise FailedPrecondition(
            f"{field}: cannot open a read-only transaction on {dialect}: {exc.orig}", field=field
        ) from None


def _pg_type(type_code: Any) -> pa.DataType | None:
    try:
        from psycopg.postgres import types
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    info = types.get(type_code) if isinstance(type_code, int) else None
    if info is None:
        return None
    return _PG_TYPES.get(info.name, pa.string())


def _value_type(value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float | decimal.Decimal):
        return pa.float64()
    if isinstance(value, dt.datetime):
        return pa.timestamp("us", tz="UTC") if value.tzinfo else pa.timestamp("us")
    if isinstance(value, dt.date):
        return pa.date32()
    if isinstance(value, bytes | bytearray | memoryview):
        return pa.binary()
    return pa.string()


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    if pa.types.is_string(type_):
        return pa.array([None if v is None else _text(v) for v in values], type_)
    if pa.types.is_floating(type_):
        return pa.array([None if v is None else float(v) for v in values], type_)
    if pa.types.is_binary(type_):
        return pa.array([None if v is None else bytes(v) for v in values], type_)
    return pa.array(values, type_)


class SqlImport:
    """One import: ``run`` streams the query's rows into a canonical Parquet file.

    Args:
        url: SQLAlchemy URL (already parsed and allowed), password included.
        query: a checked SELECT/WITH query.
        batch_rows: rows per fetch.
        max_distinct: profile bound.
        timeout_seconds: server-side limit of each statement or fetch (0: none).
        source_field: the request field that chose the database (``sql.connection`` or ``sql.url``).
        source_name: how messages name the database (a connection's name; default: the URL
            without its password).
    """

    def __init__(
        self,
        url: URL,
        query: str,
        batch_rows: int,
        max_distinct: int,
        *,
        timeout_seconds: float = 0,
        source_field: str = "sql.url",
        source_name: str = "",
    ) -> None:
        self.url = url
        self.query = query
        self.batch_rows = batch_rows
        self.max_distinct = max_distinct
        self.timeout_seconds = timeout_seconds
        self.source_field = source_field
        self.source_name = source_name or repr(self.redacted_url)
        self._deadline: _Deadline | None = None

    def __repr__(self) -> str:
        return f"SqlImport({self.source_name}, {self.query!r})"

    @property
    def redacted_url(self) -> str:
        """The URL without its password (what lineage records for a raw URL)."""
        return self.url._replace(password=None).render_as_string(hide_password=False)

    def _redact(self, text: object) -> str:
        """``text`` with the password cut out, should a driver ever echo it."""
        message = str(text).strip()
        password = self.url.password
        return message.replace(str(password), "***") if password else message

    def _engine_url(self) -> URL:
        if self.url.get_backend_name() != "sqlite":
            return self.url
        # Read-only at the file level too: a missing file is not created, nothing is written.
        path = pathlib.Path(self.url.database or "")
        if not path.is_file():
            raise FailedPrecondition(
                f"{self.source_field}: {self.source_name}: its SQLite database file does not exist",
                field=self.source_field,
            )
        return self.url.set(database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})

    def _limit_time(self, connection: Connection) -> None:
        if not self.timeout_seconds:
            return
        dialect = connection.dialect.name
        if dialect == "postgresql":
            # LOCAL: only this (read-only) transaction; applies to DECLARE and every FETCH.
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(self.timeout_seconds * 1000)}")
        elif dialect == "sqlite":
            self._deadline = _Deadline(self.timeout_seconds)
            driver = connection.connection.driver_connection
            driver.set_progress_handler(self._deadline, _SQLITE_CHECK_EVERY)  # type: ignore[union-attr]

    def _timed_out(self, exc: DBAPIError) -> bool:
        if self._deadline is not None and self._deadline.expired:
            return True
        return getattr(exc.orig, "sqlstate", None) == _PG_QUERY_CANCELED

    def run(self, out: Any, progress: Callable[[int, int], None] | None = None) -> tuple[pa.Schema, Profile]:
        """Write the rows to the Parquet file ``out``; return its schema and profile.

        Raises:
            InvalidArgument: the query fails (syntax, missing table, a refused write) or returns no rows.
            ResourceExhausted: a statement ran past the time limit.
            FailedPrecondition: a SQLite connection's file is missing, or no read-only transaction.
            Unavailable: the database cannot be reached.

        ``progress`` is called with the rows and Arrow bytes read so far after each batch.
        """
        field = self.source_field
        try:
            engine = create_engine(self._engine_url(), poolclass=NullPool)
        except (NoSuchModuleError, ModuleNotFoundError, ArgumentError) as exc:
            raise InvalidArgument(
                f"{field}: no driver for {self.source_name} ({self._redact(exc)})", field=field
            ) from None
        try:
            with engine.connect() as connection:
                _read_only(connection, field)
                self._limit_time(connection)
                result = connection.execution_options(stream_results=True, max_row_buffer=self.batch_rows)
                query = self.query
                if connection.dialect.paramstyle in ("format", "pyformat"):
                    query = query.replace("%", "%%")  # the driver treats % as a placeholder
                cursor = result.exec_driver_sql(query)
                return self._write(cursor, out, progress)
        except DBAPIError as exc:
            if self._timed_out(exc):
                raise ResourceExhausted(
                    f"sql.query: cancelled after the statement timeout of {self.timeout_seconds:g} s "
                    "(FERRY_INGEST_SQL_STATEMENT_TIMEOUT_SECONDS)",
                    field="sql.query",
                ) from None
            detail = self._redact(exc.orig)
            if isinstance(exc, OperationalError) and (exc.connection_invalidated or "connect" in detail.lower()):
                raise Unavailable(f"{field}: cannot connect to {self.source_name}: {detail}", field=field) from None
            if "read-only" in detail or "readonly" in detail.lower():
                detail = f"refused by the read-only transaction: {detail}"
            raise InvalidArgument(f"sql.query: {detail}", field="sql.query") from None
        except SQLAlchemyError as exc:
            raise InvalidArgument(f"sql.query: {self._redact(exc)}", field="sql.query") from None
        finally:
            engine.dispose()

    def _write(self, cursor: Any, out: Any, progress: Callable[[int, int], None] | None) -> tuple[pa.Schema, Profile]:
        if not cursor.returns_rows:
            raise InvalidArgument("sql.query: the statement returns no rows", field="sql.query")
        names = list(cursor.keys())
        description = cursor.cursor.description or []
        hinted = [_pg_type(column[1]) if cursor.dialect.name == "postgresql" else None for column in description]
        output: ParquetOutput | None = None
        size = 0
        try:
            for rows in cursor.partitions(self.batch_rows):
                columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
                if output is None:
                    types = [
                        hint or _value_type(next((v for v in column if v is not None), ""))
                        for hint, column in zip(hinted or [None] * len(names), columns, strict=True)
                    ]
                    schema = pa.schema(list(zip(names, types, strict=True)))
                    check_column_names(schema, "sql.query")
                    output = ParquetOutput(out, schema, self.max_distinct)
                arrays = []
                for column, field in zip(columns, output.schema, strict=True):
                    try:
                        arrays.append(_array(column, field.type))
                    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                        raise InvalidArgument(
                            f"sql.query: column {field.name!r} does not hold {field.type} values throughout ({exc}); "
                            "CAST it in the query",
                            field="sql.query",
                        ) from None
                batch = pa.record_batch(arrays, schema=output.schema)
                output.write(batch)
                size += batch.nbytes
                if progress is not None:
                    progress(output.row_count, size)
                if self._deadline is not None:
                    self._deadline.restart()  # the limit is per fetch, as PostgreSQL's is per FETCH
            if output is None or output.row_count == 0:
                raise InvalidArgument("sql.query: the query returned no rows", field="sql.query")
            return output.schema, output.close()
        except BaseException:
            if output is not None:
                output.abandon()
            raise
