"""CSV, JSON Lines and Parquet sources -> canonical Parquet + profile, streaming.

One pass: Arrow's streaming reader follows the spool as it grows (parsing on its own
thread), and each batch goes to the canonical Parquet writer and the profile
(:mod:`ferry_ingest.parquet_output`), so memory holds a few blocks whatever the file
size. Empty CSV fields are nulls (as in pandas). Parquet sources are already
columnar: they are validated and profiled row group by row group and kept byte for
byte (passthrough), so the version's object is exactly what was uploaded.

Arrow's readers infer column types from the first block. When a later block does
not fit (an integer column meets ``1.5``, an empty column meets a value), the
conversion restarts from the top of the spool with that column widened
(null -> inferred, int64 -> double -> string), a bounded number of times.

Every block Arrow reads is also shown to a :class:`~ferry_ingest.scan.SourceScan`,
which catches what Arrow accepts silently (a CSV quote never closed, NUL bytes, JSON
integers beyond int64); the conversion then fails with the line.
"""

from __future__ import annotations

import contextlib
import pathlib
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ferry_common.errors import InvalidArgument
from ferry_ingest.domain import DataFormat
from ferry_ingest.locate import (
    SourceProblem,
    csv_record_line,
    find_csv_problem,
    find_jsonl_problem,
    first_data_line,
)
from ferry_ingest.parquet_output import Progress, canonical_schema, check_column_names, write_parquet
from ferry_ingest.scan import CsvScan, JsonlScan, SourceScan
from ferry_ingest.spool import Spool, SpoolReader
from ferry_profile import Profile, ProfileBuilder

__all__ = ["ConvertOptions", "Converted", "convert"]

MAX_RESTARTS = 64
PARQUET_BATCH_ROWS = 131_072
# Row groups up to this uncompressed size are decoded whole (faster); larger ones in batches.
MAX_ROW_GROUP_BYTES = 16 * 1024 * 1024
# Small read blocks keep Arrow's read-ahead (a few blocks per thread) small; the
# types come from a larger sample read first (``infer_bytes``).
READ_BLOCK_BYTES = 256 * 1024


@dataclass(frozen=True)
class ConvertOptions:
    """How to read a source.

    Attributes:
        field: the request field errors name (``chunk``, ``object.uri``).
        delimiter: CSV delimiter.
        infer_bytes: how much of the start of a text source column types are inferred from.
        max_distinct: profile bound (see :mod:`ferry_profile`).
    """

    field: str = "chunk"
    delimiter: str = ","
    infer_bytes: int = 16 * 1024 * 1024
    max_distinct: int = 65_536


@dataclass(frozen=True)
class Converted:
    """A canonical Parquet file on local disk and its profile.

    ``path`` is the spool itself when the source was kept as is (``passthrough``).
    """

    path: pathlib.Path
    schema: pa.Schema
    profile: Profile
    passthrough: bool

    @property
    def row_count(self) -> int:
        return self.profile.row_count


def convert(
    spool: Spool,
    fmt: DataFormat,
    out_dir: pathlib.Path,
    options: ConvertOptions,
    progress: Progress | None = None,
    on_output: Callable[[Spool], None] | None = None,
) -> Converted:
    """Turn the (possibly still growing) ``spool`` into canonical Parquet + profile.

    ``on_output`` is told about the growing output file of each conversion attempt
    (a retry with widened types starts a new one), so it can be uploaded while written.

    Raises:
        InvalidArgument: empty or malformed source; the message names the line.
    """
    if fmt is DataFormat.PARQUET:
        return _profile_parquet(spool, options, progress)
    out = out_dir / f"{spool.path.stem}.parquet"
    text_format: _TextFormat = _CsvFormat(options) if fmt is DataFormat.CSV else _JsonlFormat(options)
    return _convert_text(spool, out, options, progress, text_format, on_output)


def _empty(spool: Spool, options: ConvertOptions) -> InvalidArgument:
    return InvalidArgument(f"{options.field}: the file is empty ({spool.size} bytes)", field=options.field)


def _convert_text(
    spool: Spool,
    out: pathlib.Path,
    options: ConvertOptions,
    progress: Progress | None,
    fmt: _TextFormat,
    on_output: Callable[[Spool], None] | None,
) -> Converted:
    sample = _sample(spool, options.infer_bytes)
    if not sample.strip():
        spool.wait_closed()
        if spool.size == 0 or not sample.strip():
            raise _empty(spool, options)
    fmt.infer(sample)
    del sample
    for _ in range(MAX_RESTARTS):
        source = spool.reader()
        scan = fmt.scan()
        try:
            try:
                reader = fmt.open(pa.PythonFile(_ScannedSource(source, scan), mode="r"))
            except pa.ArrowInvalid as exc:
                # Arrow converts the first block while opening: a value there may not fit.
                if not scan.failed and fmt.widen(spool, exc, None):
                    continue
                raise fmt.error(spool, exc, None, scan) from None
            if scan.failed:
                raise fmt.error(spool, pa.ArrowInvalid("stopped reading"), reader.schema, scan)
            check_column_names(reader.schema, options.field)
            if any(pa.types.is_binary(f.type) for f in reader.schema):
                raise fmt.error(spool, pa.ArrowInvalid("invalid UTF-8 data"), reader.schema, scan)
            output: Spool | None = None
            if on_output is not None:
                out.unlink(missing_ok=True)
                output = Spool(out, hashed=False)
                on_output(output)
            try:
                profile = write_parquet(
                    _read_ahead(reader, source), reader.schema, out, options.max_distinct, progress, output
                )
            except pa.ArrowInvalid as exc:
                if not scan.failed and fmt.widen(spool, exc, reader.schema):
                    continue
                raise fmt.error(spool, exc, reader.schema, scan) from None
        finally:
            source.close()
        if (problem := scan.problem(spool.path)) is not None:
            out.unlink(missing_ok=True)
            raise fmt.located(problem)
        if profile.row_count == 0:
            out.unlink(missing_ok=True)
            raise InvalidArgument(f"{options.field}: the file has no data rows", field=options.field)
        if not reader.schema.names:
            out.unlink(missing_ok=True)
            line = first_data_line(spool.path)
            raise fmt.located(SourceProblem(line, "no row has a field; a dataset needs at least one column"))
        return Converted(out, canonical_schema(reader.schema), profile, passthrough=False)
    raise InvalidArgument(
        f"{options.field}: column types keep changing (last: {fmt.last_change(spool)}); "
        "give the columns consistent values",
        field=options.field,
    )


class _ScannedSource:
    """A spool reader showing each block to a scan before Arrow parses it.

    Once the scan has found a problem, Arrow is told the data ended: converting the
    rest would be wasted work.
    """

    def __init__(self, source: SpoolReader, scan: SourceScan) -> None:
        self._source = source
        self._scan = scan

    @property
    def closed(self) -> bool:
        return self._source.closed

    def read(self, size: int = -1) -> bytes:
        if self._scan.failed:
            return b""
        data = self._source.read(size)
        self._scan.feed(data)
        return b"" if self._scan.failed else data


def _sample(spool: Spool, size: int) -> bytes:
    """The first ``size`` bytes of the spool, cut after the last complete line."""
    with spool.reader() as reader:
        data = reader.read(size)
        complete = len(data) < size or not reader.read(1)
    if complete:
        return data
    cut = data.rfind(b"\n")
    return data[: cut + 1] if cut >= 0 else data


_DONE = object()
_T = TypeVar("_T")


def _read_ahead(reader: pa.RecordBatchReader, source: SpoolReader, depth: int = 12) -> Iterator[pa.RecordBatch]:
    """Parse on a helper thread while the caller writes and profiles (two cores busy).

    ``depth`` batches of a 256 KiB block each: with 2, the parser stood still while the
    caller encoded a row group (~48 batches) and the caller then waited for it (numeric
    table, 72.8 MB of CSV: 1.7-1.8 s against 1.3-1.6 s with 12). Deeper costs resident
    memory without more speed: the 1 GB CSV with free text peaked at 291 MB with 12,
    315 MB with 24 and 331 MB with 64 (the bound is 300 MB).
    """
    for batch in _prefetch(iter(reader), depth=depth, name="parse", on_close=source.cancel):
        assert isinstance(batch, pa.RecordBatch)
        yield batch


class _TextFormat:
    name = ""

    def __init__(self, options: ConvertOptions) -> None:
        self.options = options

    def infer(self, sample: bytes) -> None:
        raise NotImplementedError

    def scan(self) -> SourceScan:
        raise NotImplementedError

    def open(self, source: pa.PythonFile) -> pa.RecordBatchReader:
        raise NotImplementedError

    def widen(self, spool: Spool, exc: pa.ArrowInvalid, schema: pa.Schema | None) -> bool:
        """Widen the column of the value ``exc`` reports so that it fits; False when that is no fix.

        ``schema``: the reader's; ``None`` when opening failed (the types given then apply).
        """
        raise NotImplementedError

    def error(self, spool: Spool, exc: pa.ArrowInvalid, schema: pa.Schema | None, scan: SourceScan) -> InvalidArgument:
        raise NotImplementedError

    def last_change(self, spool: Spool) -> str:
        raise NotImplementedError

    def located(self, problem: SourceProblem) -> InvalidArgument:
        field = self.options.field
        return InvalidArgument(f"{field}: malformed {self.name} at {problem}", field=field)

    def _first_problem(
        self, spool: Spool, scan: SourceScan, find: Callable[[int | None], SourceProblem | None]
    ) -> SourceProblem | None:
        """The first of what the scan saw and what ``find`` (a re-read, up to a line) finds."""
        scanned = scan.problem(spool.path)
        found = find(scanned.line if scanned is not None else None)
        return found if found is not None else scanned


_CSV_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to ([^:]+): invalid value '(.*)'", re.S
)
_CSV_ROW = re.compile(r"Row #(\d+)")
_BOOL_TEXT = {"true", "false", "True", "False", "TRUE", "FALSE", "1", "0"}


def _parses_as(value: str, type_: pa.DataType) -> bool:
    """Whether Arrow reads ``value`` as ``type_`` (its own parser, not Python's)."""
    try:
        pa.array([value], pa.string()).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _widened(current: pa.DataType, value: str) -> pa.DataType:
    """The next type for a column holding ``current`` that meets ``value``.

    null -> what the value reads as; integer -> double (a number) or string; anything
    else -> string. Never ``current`` itself, so restarts end.
    """
    if pa.types.is_null(current):
        for type_ in (pa.int64(), pa.float64()):
            if _parses_as(value, type_):
                return type_
        return pa.bool_() if value in _BOOL_TEXT else pa.string()
    if pa.types.is_integer(current) and _parses_as(value, pa.float64()):
        return pa.float64()
    return pa.string()


class _CsvFormat(_TextFormat):
    name = "CSV"

    def __init__(self, options: ConvertOptions) -> None:
        super().__init__(options)
        self.names: list[str] = []
        self.types: dict[str, pa.DataType] = {}
        self._last_change: tuple[str, str, int | None] | None = None  # column, value, Arrow's row

    def _parse_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(delimiter=self.options.delimiter, newlines_in_values=True)

    def _convert_options(self) -> pacsv.ConvertOptions:
        return pacsv.ConvertOptions(column_types=self.types, strings_can_be_null=True)

    def infer(self, sample: bytes) -> None:
        check = self.scan()  # let Arrow infer only from what passed the scan
        check.feed(sample)
        check.feed(b"")
        if check.failed:
            return  # the conversion's own scan reports it, with its line
        try:
            table = pacsv.read_csv(
                pa.BufferReader(sample),
                parse_options=self._parse_options(),
                convert_options=self._convert_options(),
            )
        except pa.ArrowInvalid:
            return  # the streaming read reports it, with its line
        self.names = table.schema.names
        self.types = {f.name: f.type for f in table.schema if not pa.types.is_null(f.type)}

    def scan(self) -> SourceScan:
        return CsvScan(self.options.delimiter)

    def open(self, source: pa.PythonFile) -> pa.RecordBatchReader:
        return pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES, use_threads=False),
            parse_options=self._parse_options(),
            convert_options=self._convert_options(),
        )

    def widen(self, spool: Spool, exc: pa.ArrowInvalid, schema: pa.Schema | None) -> bool:
        match = _CSV_CONVERSION.search(str(exc))
        names = schema.names if schema is not None else self.names
        if not match or int(match[1]) >= len(names):
            return False
        name, value = names[int(match[1])], match[4]
        current = schema.field(name).type if schema is not None else self.types.get(name, pa.null())
        if pa.types.is_string(current) or pa.types.is_large_string(current):
            return False  # not a type problem (invalid UTF-8): reported with its line
        self.types[name] = _widened(current, value)
        self._last_change = (name, value, int(match[2]) if match[2] else None)
        return True

    def error(self, spool: Spool, exc: pa.ArrowInvalid, schema: pa.Schema | None, scan: SourceScan) -> InvalidArgument:
        field = self.options.field
        delimiter = self.options.delimiter
        problem = self._first_problem(spool, scan, lambda until: find_csv_problem(spool.path, delimiter, until))
        if problem is not None:
            return self.located(problem)
        detail = str(exc).removeprefix("CSV parse error: ")
        row = _CSV_ROW.search(detail)
        line = csv_record_line(spool.path, self.options.delimiter, int(row[1])) if row else None
        if line is not None:
            return self.located(SourceProblem(line, detail))
        return InvalidArgument(f"{field}: malformed CSV: {detail}", field=field)

    def last_change(self, spool: Spool) -> str:
        if self._last_change is None:
            return "unknown"
        name, value, row = self._last_change
        line = csv_record_line(spool.path, self.options.delimiter, row) if row is not None else None
        where = f"line {line}: " if line is not None else ""
        return f"{where}column {name!r} holds {value[:40]!r}"


_JSON_NULL_CHANGE = re.compile(r"Column\(/([^)]*)\) changed from null to (\w+)")
_JSON_TYPES = {"number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}
_ARROW_TYPES = {"int64": pa.int64(), "double": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


class _JsonlFormat(_TextFormat):
    name = "JSON Lines"

    def __init__(self, options: ConvertOptions) -> None:
        super().__init__(options)
        self.explicit: dict[str, pa.DataType] = {}
        self._last_change = "unknown"

    def infer(self, sample: bytes) -> None:
        check = JsonlScan()  # Arrow crashes on some input: let it see only what passed the scan
        check.feed(sample)
        check.feed(b"")
        if check.failed:
            return  # the conversion's own scan reports it, with its line
        try:
            table = pajson.read_json(pa.BufferReader(sample))
        except pa.ArrowInvalid:
            return
        self.explicit = {f.name: f.type for f in table.schema if not pa.types.is_null(f.type)}

    def scan(self) -> SourceScan:
        return JsonlScan()

    def open(self, source: pa.PythonFile) -> pa.RecordBatchReader:
        schema = pa.schema(list(self.explicit.items())) if self.explicit else None
        return pajson.open_json(
            source,
            read_options=pajson.ReadOptions(block_size=READ_BLOCK_BYTES, use_threads=False),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )

    def widen(self, spool: Spool, exc: pa.ArrowInvalid, schema: pa.Schema | None) -> bool:
        if schema is None:
            schema = pa.schema(list(self.explicit.items()))
        match = _JSON_NULL_CHANGE.search(str(exc))
        if match and match[2] in _JSON_TYPES and match[1] in schema.names:
            self.explicit[match[1]] = _JSON_TYPES[match[2]]
            self._last_change = f"field {match[1]!r} changed from null to {match[2]}"
            return True
        problem = find_jsonl_problem(
            spool.path,
            self.options.infer_bytes,
            set(schema.names),
            {f.name for f in schema if pa.types.is_integer(f.type)},
        )
        if problem is None or problem.column is None or problem.arrow_type not in _ARROW_TYPES:
            return False
        widened = _ARROW_TYPES[problem.arrow_type]
        if self.explicit.get(problem.column) == widened:
            return False
        self.explicit.update({f.name: f.type for f in schema if not pa.types.is_null(f.type)})
        self.explicit[problem.column] = widened
        self._last_change = str(problem)
        return True

    def error(self, spool: Spool, exc: pa.ArrowInvalid, schema: pa.Schema | None, scan: SourceScan) -> InvalidArgument:
        field = self.options.field
        known = set(schema.names) if schema is not None else None
        first_block = self.options.infer_bytes if known else None
        problem = self._first_problem(
            spool, scan, lambda until: find_jsonl_problem(spool.path, first_block, known, until_line=until)
        )
        if problem is not None:
            return self.located(problem)
        detail = str(exc).removeprefix("JSON parse error: ")
        return InvalidArgument(f"{field}: malformed JSON Lines: {detail}", field=field)

    def last_change(self, spool: Spool) -> str:
        return self._last_change


def _row_groups(parquet: pq.ParquetFile) -> Iterator[pa.RecordBatch | pa.Table]:
    """Every row, a row group at a time (decoded in parallel), or in batches when a group is large."""
    metadata = parquet.metadata
    for index in range(metadata.num_row_groups):
        if metadata.row_group(index).total_byte_size <= MAX_ROW_GROUP_BYTES:
            yield parquet.read_row_group(index, use_threads=True)
        else:
            yield from parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS // 2, row_groups=[index], use_threads=True)


def _prefetch(
    items: Iterator[_T], depth: int = 1, name: str = "decode", on_close: Callable[[], None] | None = None
) -> Iterator[_T]:
    """Produce ``items`` on a helper thread, ``depth`` ahead of the caller.

    An error in the producer is raised in the caller. When the caller stops early the
    producer is told to stop, ``on_close`` runs (to unblock a producer waiting on its
    source) and the queue is drained until the thread ends.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put(item)
            ready.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            ready.put(exc)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if on_close is not None:
            on_close()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get_nowait()
            thread.join(timeout=0.05)


def _profile_parquet(spool: Spool, options: ConvertOptions, progress: Progress | None) -> Converted:
    field = options.field
    spool.wait_closed()
    if spool.size == 0:
        raise _empty(spool, options)
    try:
        # Buffered page reads: a column chunk is not read whole into memory.
        parquet = pq.ParquetFile(spool.path, buffer_size=1024 * 1024, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{field}: not a Parquet file ({exc})", field=field) from None
    with parquet:
        schema = parquet.schema_arrow
        check_column_names(schema, field)
        builder = ProfileBuilder(schema, options.max_distinct)
        try:
            for batch in _prefetch(_row_groups(parquet)):
                builder.add(batch)
                if progress is not None:
                    progress(builder.row_count)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidArgument(f"{field}: corrupt Parquet file ({exc})", field=field) from None
    if builder.row_count == 0:
        raise InvalidArgument(f"{field}: the file has no data rows", field=field)
    return Converted(spool.path, schema, builder.result(), passthrough=True)
