"""Canonical Parquet writing: batches in, row groups out, profiled on the way.

Canonical Parquet: zstd-compressed, row groups of up to 131,072 rows, dictionary pages
for string columns only, min/max statistics for the other columns only, Arrow types,
all-null columns typed ``string``. The output can
be written through a :class:`~ferry_ingest.spool.Spool` so that an upload follows it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import pathlib
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ferry_common.errors import InvalidArgument
from ferry_common.fields import MAX_NAME
from ferry_common.names import shorten
from ferry_ingest.memory import release_free_memory
from ferry_ingest.spool import Spool
from ferry_profile import Profile, ProfileBuilder

__all__ = [
    "PARQUET_COMPRESSION",
    "ParquetOutput",
    "Progress",
    "canonical_schema",
    "check_column_names",
    "write_parquet",
]

PARQUET_COMPRESSION = "zstd"
ROW_GROUP_ROWS = 131_072
TRIM_EVERY_GROUPS = 16
DICTIONARY_SAMPLE_ROWS = 8192

Progress = Callable[[int], None]


def canonical_schema(schema: pa.Schema) -> pa.Schema:
    """The stored schema: all-null (``null``) columns become ``string``."""
    return pa.schema(
        [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema], metadata=schema.metadata
    )


def check_column_names(schema: pa.Schema, field: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(schema.names, start=1):
        if not name.strip():
            raise InvalidArgument(f"{field}: column {index} has an empty name", field=field)
        if len(name) > MAX_NAME:
            raise InvalidArgument(
                f"{field}: column {index} name {shorten(name)} is longer than {MAX_NAME} characters", field=field
            )
        if name in seen:
            raise InvalidArgument(f"{field}: duplicate column name {shorten(name)}", field=field)
        seen.add(name)


def _dictionary_columns(schema: pa.Schema, first: pa.Table | None) -> list[str]:
    """The string columns worth dictionary pages, judged on the first row group.

    Dictionary pages pay off for strings; for numbers they mostly cost a fallback. A
    string column that is mostly distinct (free text, identifiers) would only fill a
    dictionary page per row group and fall back to plain pages: hashing its values for
    that costs as much as profiling them, for a larger file.
    """
    names = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    if first is None:
        return names
    kept = []
    for name in names:
        sample = first.column(name).slice(0, DICTIONARY_SAMPLE_ROWS).drop_null()
        if len(sample) < DICTIONARY_SAMPLE_ROWS // 4 or pc.count_distinct(sample).as_py() <= len(sample) // 2:
            kept.append(name)
    return kept


def _statistics_columns(schema: pa.Schema) -> list[str]:
    """The Parquet columns (leaf paths) that carry min/max statistics: all but strings.

    Nothing in Ferry reads Parquet statistics back (readers scan whole files); numbers,
    booleans and timestamps, nested ones included, keep theirs for outside readers'
    row-group pruning, which costs little to write. Strings' and binaries' (byte-array
    columns) compare every value, dictionary-encoded or not, for bounds that prune
    little: about a sixth of the writer's CPU on a table with a few string columns.
    """
    # The leaf paths as Parquet names them (``s.x``, ``l.list.element``): from an empty file.
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    parquet_schema = pq.read_metadata(pa.BufferReader(sink.getvalue())).schema
    return [
        parquet_schema.column(i).path
        for i in range(len(parquet_schema))
        if parquet_schema.column(i).physical_type != "BYTE_ARRAY"
    ]


class ParquetOutput:
    """A canonical Parquet file being written batch by batch, profiled on the way.

    With ``spool`` (one made with ``hashed=False``), the file is that growing file, so a
    reader (an S3 upload) can follow it while it is written. Arrow writes it through its
    own file stream and the spool is told how far after each row group: a Python file
    object as the sink would take the GIL for each of the writer's ~150 writes per row
    group, and with the profile's and the parser's threads busy each of those waits
    (measured: 0.6-0.8 s of a 4 s conversion of 211 MB of CSV).
    """

    def __init__(self, path: pathlib.Path, schema: pa.Schema, max_distinct: int, spool: Spool | None = None) -> None:
        self.path = path
        self.schema = canonical_schema(schema)
        self._spool = spool
        self._sink: pa.NativeFile | None = None
        # Opened with the first row group, which decides the columns' dictionary pages.
        self._writer: pq.ParquetWriter | None = None
        self.builder = ProfileBuilder(self.schema, max_distinct)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._written = 0
        self._groups = 0
        self._profiler = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="profile-stage")
        self._profiling: concurrent.futures.Future[None] | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        """Buffer ``batch``; full row groups are written and profiled as they fill."""
        if batch.schema != self.schema:
            columns = zip(batch.columns, self.schema, strict=True)
            batch = pa.RecordBatch.from_arrays(
                [col.cast(f.type) if col.type != f.type else col for col, f in columns], schema=self.schema
            )
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows = [], 0
        # The row group is profiled on a helper thread while it is encoded here.
        self._wait_profile()
        self._profiling = self._profiler.submit(self.builder.add, table)
        self._written += table.num_rows
        self._open(table).write_table(table, row_group_size=max(table.num_rows, 1))
        self._published()
        self._groups += 1
        if self._groups % TRIM_EVERY_GROUPS == 0:
            release_free_memory()  # keeps a long conversion's resident memory flat

    def _open(self, first: pa.Table | None) -> pq.ParquetWriter:
        if self._writer is None:
            if self._spool is not None:
                self._sink = pa.OSFile(str(self._spool.path), mode="wb")  # the spool's (empty) file
            self._writer = pq.ParquetWriter(
                self._sink if self._sink is not None else self.path,
                self.schema,
                compression=PARQUET_COMPRESSION,
                use_dictionary=_dictionary_columns(self.schema, first) or False,
                write_statistics=_statistics_columns(self.schema) or False,
            )
        return self._writer

    def _published(self) -> None:
        """Let the spool's readers see what Arrow has written so far."""
        if self._sink is not None and self._spool is not None:
            self._spool.written_to(self._sink.tell())

    def _wait_profile(self) -> None:
        if self._profiling is not None:
            profiling, self._profiling = self._profiling, None
            profiling.result()

    @property
    def row_count(self) -> int:
        return self._written + self._pending_rows

    def close(self) -> Profile:
        self.flush()
        self._open(None).close()  # the footer (a sink handed in stays open)
        self._published()
        if self._sink is not None:
            self._sink.close()
        if self._spool is not None:
            self._spool.close()
        self._wait_profile()
        self._profiler.shutdown()
        return self.builder.result()

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._wait_profile()
        self._profiler.shutdown()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        if self._sink is not None:
            with contextlib.suppress(Exception):
                self._sink.close()
        if self._spool is not None:
            self._spool.fail(RuntimeError("conversion abandoned"))
        self.path.unlink(missing_ok=True)


def write_parquet(
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    path: pathlib.Path,
    max_distinct: int,
    progress: Progress | None = None,
    spool: Spool | None = None,
) -> Profile:
    """Write ``batches`` to a canonical Parquet file at ``path``; return its profile."""
    output = ParquetOutput(path, schema, max_distinct, spool)
    try:
        for batch in batches:
            output.write(batch)
            if progress is not None:
                progress(output.row_count)
        return output.close()
    except BaseException:
        output.abandon()
        raise
