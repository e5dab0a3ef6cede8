"""Find the line a malformed CSV or JSON Lines source goes wrong on.

Arrow's streaming readers say *what* is wrong but not *where*. On that (rare) error
path, these scanners re-read the spooled source with Python's own parsers to name
the line, so the caller gets ``line 1234: expected 3 fields, got 4``.
"""

from __future__ import annotations

import codecs
import csv
import json
import pathlib
from collections.abc import Iterator

__all__ = ["SourceProblem", "find_csv_problem", "find_jsonl_problem", "json_kind"]


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


def find_csv_problem(path: pathlib.Path, delimiter: str) -> SourceProblem | None:
    """The first line with bad UTF-8, broken quoting or a wrong number of fields."""
    problems: list[SourceProblem] = []
    reader = csv.reader(_decoded_lines(path, problems), delimiter=delimiter, strict=True)
    expected: int | None = None
    try:
        for row in reader:
            if expected is None:
                expected = len(row)
            elif len(row) != expected and row:
                return SourceProblem(reader.line_num, f"expected {expected} fields, got {len(row)}")
    except csv.Error as exc:
        return SourceProblem(reader.line_num, f"malformed CSV ({exc})")
    return problems[0] if problems else None


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


def find_jsonl_problem(
    path: pathlib.Path,
    first_block_bytes: int | None = None,
    known: set[str] | None = None,
    int_columns: set[str] | None = None,
) -> SourceProblem | None:
    """The first line that is not a JSON object or changes a field's kind.

    With ``first_block_bytes`` and ``known`` (fields Arrow inferred from the first
    block), also the first later line that brings a new field; with
    ``int_columns``, the first fraction in one of them. ``column`` and
    ``arrow_type`` then say which field and what type would hold the value.
    """
    kinds: dict[str, str] = {}
    offset = 0
    problems: list[SourceProblem] = []
    for number, line in enumerate(_decoded_lines(path, problems), start=1):
        offset += len(line.encode())
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            return SourceProblem(number, f"invalid JSON ({exc.msg} at column {exc.colno})")
        if not isinstance(value, dict):
            return SourceProblem(number, f"expected a JSON object, got {json_kind(value) or 'null'}")
        for key, item in value.items():
            kind = json_kind(item)
            if kind is None:
                continue
            seen = kinds.setdefault(key, kind)
            if seen != kind:
                return SourceProblem(number, f"field {key!r} changed from {seen} to {kind}", key)
            if int_columns and key in int_columns and isinstance(item, float):
                return SourceProblem(number, f"field {key!r} holds the fraction {item!r}", key, "double")
            if (
                known is not None
                and first_block_bytes is not None
                and offset > first_block_bytes
                and key not in known
            ):
                return SourceProblem(number, f"new field {key!r}", key, _arrow_type(item))
    return problems[0] if problems else None
