"""Find the line a malformed CSV or JSON Lines source goes wrong on.

Arrow's streaming readers say *what* is wrong but not *where*. On that (rare) error
path, these scanners re-read the spooled source with Python's own parsers to name
the line, so the caller gets ``line 1234: expected 3 fields, got 4``.

What Arrow accepts without a word (a quote never closed, NUL bytes, JSON integers
beyond int64) is caught while the data is read, by :mod:`ferry_ingest.scan`.
"""

from __future__ import annotations

import codecs
import csv
import json
import pathlib
from collections.abc import Iterator

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "SourceProblem",
    "big_int",
    "big_int_message",
    "csv_record_line",
    "find_csv_problem",
    "find_jsonl_problem",
    "first_data_line",
    "json_kind",
    "line_at",
    "loads_json",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Python's csv refuses fields above 128 KiB by default; Arrow has no such limit, and a
# long value (or a quote left open) must be reported as what it is.
_CSV_FIELD_LIMIT = 2**31 - 1


class SourceProblem:
    """A located problem: 1-based physical line and a description."""

    def __init__(self, line: int, message: str, column: str | None = None, arrow_type: str | None = None) -> None:
        self.line = line
        self.message = message
        self.column = column
        self.arrow_type = arrow_type  # the type that would hold the value, when widening can fix it

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _decoded_lines(path: pathlib.Path, problems: list[SourceProblem]) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            try:
                text = decoder.decode(raw)
            except UnicodeDecodeError as exc:
                problems.append(SourceProblem(number, f"invalid UTF-8 ({exc.reason} at byte {exc.start})"))
                return
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield text


def find_csv_problem(path: pathlib.Path, delimiter: str, until_line: int | None = None) -> SourceProblem | None:
    """The first line with bad UTF-8, broken quoting or a wrong number of fields (up to ``until_line``)."""
    problems: list[SourceProblem] = []
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(_decoded_lines(path, problems), delimiter=delimiter, strict=True)
    expected: int | None = None
    try:
        for row in reader:
            if until_line is not None and reader.line_num > until_line:
                return None
            if expected is None:
                expected = len(row)
            elif len(row) != expected and row:
                return SourceProblem(reader.line_num, f"expected {expected} fields, got {len(row)}")
    except csv.Error as exc:
        if problems:
            return problems[0]
        if "unexpected end of data" in str(exc):
            from ferry_ingest.scan import CsvScan, scan_file  # scan builds on this module

            scan = scan_file(path, CsvScan(delimiter))
            if (problem := scan.problem(path)) is not None:
                return problem
        return SourceProblem(reader.line_num, f"malformed CSV ({exc})")
    return problems[0] if problems else None


def csv_record_line(path: pathlib.Path, delimiter: str, record: int) -> int | None:
    """The line where Arrow's ``Row #record`` starts (1-based, the header is 1, blank lines skipped)."""
    problems: list[SourceProblem] = []
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(_decoded_lines(path, problems), delimiter=delimiter)
    count, end = 0, 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if row:
                count += 1
                if count == record:
                    return start
    except csv.Error:
        return None
    return None


def first_data_line(path: pathlib.Path) -> int:
    """The first line that is not blank."""
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            if raw.strip():
                return number
    return 1


def line_at(path: pathlib.Path, offset: int) -> int:
    """The 1-based line of the byte at ``offset``."""
    lines, position = 1, 0
    with path.open("rb") as source:
        while position < offset and (data := source.read(min(1 << 20, offset - position))):
            lines += data.count(b"\n")
            position += len(data)
    return lines


def json_kind(value: object) -> str | None:
    """The JSON kind Arrow infers from: number, string, boolean, object, array (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _arrow_type(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return None


class _BigInteger:
    """A JSON integer literal outside int64, as written."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> int | _BigInteger:
    # Also keeps Python from refusing literals of more than 4300 digits.
    value = int(text) if len(text) <= 20 else None
    return value if value is not None and INT64_MIN <= value <= INT64_MAX else _BigInteger(text)


def loads_json(line: str | bytes) -> object:
    return json.loads(line, parse_int=_parse_int)


def big_int(value: object, path: str) -> tuple[str, str] | None:
    """The first integer outside int64 in a parsed JSON value: where it is, as written."""
    if isinstance(value, _BigInteger):
        return path, value.text
    if isinstance(value, dict):
        items: Iterator[tuple[str, object]] = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, item in items:
        if (found := big_int(item, where)) is not None:
            return found
    return None


def big_int_message(field: str, text: str) -> str:
    if len(text) > 40:
        text = f"{text[:20]}... ({len(text.lstrip('-'))} digits)"
    return f"field {field!r} holds the integer {text}, beyond int64 (write it as a string to keep every digit)"


def find_jsonl_problem(
    path: pathlib.Path,
    first_block_bytes: int | None = None,
    known: set[str] | None = None,
    int_columns: set[str] | None = None,
    until_line: int | None = None,
) -> SourceProblem | None:
    """The first line (up to ``until_line``) that is not a JSON object or changes a field's kind.

    With ``first_block_bytes`` and ``known`` (fields Arrow inferred from the first
    block), also the first later line that brings a new field; with
    ``int_columns``, the first fraction in one of them. ``column`` and
    ``arrow_type`` then say which field and what type would hold the value.
    """
    kinds: dict[str, str] = {}
    offset = 0
    problems: list[SourceProblem] = []
    for number, line in enumerate(_decoded_lines(path, problems), start=1):
        if until_line is not None and number > until_line:
            return None
        offset += len(line.encode())
        if not line.strip():
            continue
        try:
            value = loads_json(line)
            big = big_int(value, "")
        except json.JSONDecodeError as exc:
            return SourceProblem(number, f"invalid JSON ({exc.msg} at column {exc.colno})")
        except RecursionError:
            return SourceProblem(number, "JSON nested too deeply")
        if not isinstance(value, dict):
            return SourceProblem(number, f"expected a JSON object, got {json_kind(value) or 'null'}")
        if big is not None:
            return SourceProblem(number, big_int_message(*big))
        for key, item in value.items():
            kind = json_kind(item)
            if kind is None:
                continue
            seen = kinds.setdefault(key, kind)
            if seen != kind:
                return SourceProblem(number, f"field {key!r} changed from {seen} to {kind}", key)
            if int_columns and key in int_columns and isinstance(item, float):
                return SourceProblem(number, f"field {key!r} holds the fraction {item!r}", key, "double")
            if known is not None and first_block_bytes is not None and offset > first_block_bytes and key not in known:
                return SourceProblem(number, f"new field {key!r}", key, _arrow_type(item))
    return problems[0] if problems else None
