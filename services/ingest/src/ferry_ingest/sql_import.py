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

Types come from PostgreSQL's column type OIDs where available, otherwise from the
first non-null value of each column in the first batch. NUMERIC/DECIMAL become
double; JSON values become their JSON text; unknown types become their text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ferry_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from ferry_ingest.parquet_output import ParquetOutput, check_column_names
from ferry_ingest.profile import Profile

__all__ = ["SqlImport", "check_query", "parse_url"]

_FIRST_WORD = re.compile(r"[A-Za-z_]+")
_PG_TYPES = {
    "int2": pa.int64(), "int4": pa.int64(), "int8": pa.int64(), "oid": pa.int64(),
    "float4": pa.float64(), "float8": pa.float64(), "numeric": pa.float64(), "money": pa.string(),
    "bool": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"), "bytea": pa.binary(),
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
        raise InvalidArgument(f"{field}: {url!r} is not a SQLAlchemy URL such as postgresql+psycopg://host/db",
                              field=field) from None


def _read_only(connection: Connection) -> None:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.exec_driver_sql("PRAGMA query_only = ON")
        return
    try:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
    except DBAPIError as exc:
        raise FailedPrecondition(f"sql.url: cannot open a read-only transaction on {dialect}: {exc.orig}") from None


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
        url: SQLAlchemy URL (already parsed).
        query: a checked SELECT/WITH query.
        batch_rows: rows per fetch.
        max_distinct: profile bound.
    """

    def __init__(self, url: URL, query: str, batch_rows: int, max_distinct: int) -> None:
        self.url = url
        self.query = query
        self.batch_rows = batch_rows
        self.max_distinct = max_distinct

    @property
    def redacted_url(self) -> str:
        """The URL without its password (what lineage records)."""
        return self.url._replace(password=None).render_as_string(hide_password=False)

    def run(self, out: Any, progress: Callable[[int, int], None] | None = None) -> tuple[pa.Schema, Profile]:
        """Write the rows to the Parquet file ``out``; return its schema and profile.

        Raises:
            InvalidArgument: the query fails (syntax, missing table, a refused write) or returns no rows.
            Unavailable: the database cannot be reached.

        ``progress`` is called with the rows and Arrow bytes read so far after each batch.
        """
        try:
            engine = create_engine(self.url, poolclass=NullPool)
        except (NoSuchModuleError, ModuleNotFoundError, ArgumentError) as exc:
            raise InvalidArgument(f"sql.url: no driver for {self.redacted_url!r} ({exc})", field="sql.url") from None
        try:
            with engine.connect() as connection:
                _read_only(connection)
                result = connection.execution_options(stream_results=True, max_row_buffer=self.batch_rows)
                query = self.query
                if connection.dialect.paramstyle in ("format", "pyformat"):
                    query = query.replace("%", "%%")  # the driver treats % as a placeholder
                cursor = result.exec_driver_sql(query)
                return self._write(cursor, out, progress)
        except OperationalError as exc:
            if exc.connection_invalidated or "connect" in str(exc.orig).lower():
                raise Unavailable(f"sql.url: cannot connect to {self.redacted_url}: {exc.orig}") from None
            raise InvalidArgument(f"sql.query: {exc.orig}", field="sql.query") from None
        except DBAPIError as exc:
            detail = str(exc.orig).strip()
            if "read-only" in detail or "readonly" in detail.lower():
                detail = f"refused by the read-only transaction: {detail}"
            raise InvalidArgument(f"sql.query: {detail}", field="sql.query") from None
        except SQLAlchemyError as exc:
            raise InvalidArgument(f"sql.query: {exc}", field="sql.query") from None
        finally:
            engine.dispose()

    def _write(
        self, cursor: Any, out: Any, progress: Callable[[int, int], None] | None
    ) -> tuple[pa.Schema, Profile]:
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
            if output is None or output.row_count == 0:
                raise InvalidArgument("sql.query: the query returned no rows", field="sql.query")
            return output.schema, output.close()
        except BaseException:
            if output is not None:
                output.abandon()
            raise
