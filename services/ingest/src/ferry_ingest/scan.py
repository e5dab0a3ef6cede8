"""Checks every block of a CSV or JSON Lines source as Arrow reads it.

Some bad input Arrow accepts without a word: a CSV quote never closed (the rest of the
file becomes one value), NUL bytes, JSON integers beyond int64 (they become doubles).
:class:`CsvScan` and :class:`JsonlScan` see every block, cheaply (vectorised; Python
only runs on the rare suspicious spot), and report those with their line
(:mod:`ferry_ingest.locate` counts the lines).
"""

from __future__ import annotations

import codecs
import pathlib
import re
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ferry_ingest.locate import SourceProblem, big_int, big_int_message, line_at, loads_json

__all__ = ["CsvScan", "JsonlScan", "SourceScan", "scan_file"]

_QUOTE = ord('"')


class SourceScan(Protocol):
    """Sees a text source block by block, in order, as it is read (``b""`` at its end)."""

    @property
    def failed(self) -> bool:
        """A problem is known already: reading further is pointless."""
        ...

    def feed(self, data: bytes) -> None: ...

    def problem(self, path: pathlib.Path) -> SourceProblem | None:
        """What was found in the data fed so far (``path``: the whole source, to count lines)."""
        ...


def scan_file(path: pathlib.Path, scan: SourceScan, block: int = 1 << 20) -> SourceScan:
    """Feed the whole file at ``path`` to ``scan``."""
    with path.open("rb") as source:
        while data := source.read(block):
            scan.feed(data)
            if scan.failed:
                return scan
    scan.feed(b"")
    return scan


class CsvScan:
    """Follows a CSV's quoting as Arrow parses it, to catch what Arrow accepts silently.

    Arrow's rules: a quote opens a quoted value only at the start of a field (elsewhere
    it is a character); inside, two quotes are one quote and a single quote ends the
    quoting. Newlines inside quotes belong to the value, so only a quote still open at
    the end of the data is an error. Also reports NUL bytes (a binary or UTF-16 file).

    In the usual case (quotes open values at field starts) the quoting state is the
    parity of the quotes seen, checked vectorised per block; a quote that breaks that
    pattern is a literal character, and the check resumes after it.
    """

    def __init__(self, delimiter: str) -> None:
        self._delimiter = ord(delimiter)  # a field starts after it, "\n" or "\r"
        self._offset = 0
        self._previous = ord("\n")  # the data starts a field, as if after a newline
        self._previous_closed = False  # the quote just before was one ending a quoted value
        self._quoted = False
        self._opened = -1  # offset of the quote that opened the current quoted value
        self._nul = -1
        self._ended = False
        self._head: bytes | None = b""  # the first bytes, until it is known whether they are a BOM
        # The header row, until its end: column names must be UTF-8 (Arrow keeps invalid
        # bytes in a name, and reading the name back then fails).
        self._header: bytearray | None = bytearray()
        self._bad_header = False

    @property
    def failed(self) -> bool:
        return self._nul >= 0 or self._bad_header

    def _follow_header(self, data: bytes) -> None:
        assert self._header is not None
        end = data.find(b"\n")
        self._header += data if end < 0 else data[:end]
        if end < 0 and len(self._header) < (1 << 20) and not self._ended:
            return
        header, self._header = bytes(self._header), None
        try:
            header.removeprefix(codecs.BOM_UTF8).decode("utf-8")
        except UnicodeDecodeError:
            self._bad_header = True

    def feed(self, data: bytes) -> None:
        if not data:
            self._ended = True
        if self._header is not None:
            self._follow_header(data)
        if self._head is not None:
            self._head += data
            if data and len(self._head) < len(codecs.BOM_UTF8):
                return
            held, self._head = self._head, None
            if held:
                self._feed(held)
        elif data:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        base, start = self._offset, 0
        self._offset += len(data)
        if base == 0 and data.startswith(codecs.BOM_UTF8):
            start = len(codecs.BOM_UTF8)  # Arrow skips it: the first field starts after it
        if self._nul < 0 and (nul := data.find(b"\0")) >= 0:
            self._nul = base + nul
        if data.find(b'"', start) >= 0:
            self._follow_quotes(np.frombuffer(data, dtype=np.uint8)[start:], base + start)
        if len(data) > start:
            self._previous = data[-1]

    def _follow_quotes(self, data: npt.NDArray[np.uint8], base: int) -> None:
        quotes = np.flatnonzero(data == _QUOTE)
        before = data[quotes - 1]  # a quote at 0 reads the last byte here: replaced just below
        if quotes[0] == 0:
            before[0] = self._previous
        # Three comparisons cost less than a look-up table indexed per quote.
        may_open = before == self._delimiter
        may_open |= before == ord("\n")
        may_open |= before == ord("\r")
        doubled = before == _QUOTE  # second quote of a pair inside a quoted value
        bad = np.flatnonzero(~(may_open | doubled))
        odd = (bad & 1).astype(np.bool_)
        bad_by_parity = (bad[~odd], bad[odd]) if bad.size else (bad, bad)
        count, index, first_open = quotes.size, 0, 0
        quoted, previous_closed = self._quoted, self._previous_closed
        while index < count:
            if not quoted and not (may_open[index] or (doubled[index] and previous_closed)):
                index, previous_closed = index + 1, False  # a literal quote inside a value
                continue
            # From here quotes alternate: ending (or doubling) and opening, the latter at
            # indexes of one parity; the first of them that can't open is a literal.
            first_open = index if not quoted else index + 1
            candidates = bad_by_parity[first_open % 2]
            at = int(np.searchsorted(candidates, first_open + (0 if quoted else 2)))
            if at < candidates.size:
                index, quoted, previous_closed = int(candidates[at]) + 1, False, False
            else:
                quoted = quoted != ((count - index) % 2 == 1)
                index, previous_closed = count, not quoted
        # Where the value open at the end (or closed by the very last byte, which the
        # next block may turn into a doubled quote) began: its last field-start quote.
        if quoted or (previous_closed and int(quotes[-1]) == data.size - 1):
            opened = np.flatnonzero(may_open[first_open:count:2])
            if opened.size:
                self._opened = base + int(quotes[first_open + 2 * int(opened[-1])])
        self._quoted, self._previous_closed = quoted, previous_closed

    @property
    def open_quote(self) -> int | None:
        """Offset of the quote still open at the end of the data (None before the end)."""
        return self._opened if self._ended and self._quoted else None

    def problem(self, path: pathlib.Path) -> SourceProblem | None:
        if self._bad_header:
            return SourceProblem(1, "invalid UTF-8 in the header row (column names must be UTF-8)")
        if self._nul >= 0:
            return SourceProblem(line_at(path, self._nul), "NUL byte (is this a binary or UTF-16 file?)")
        if (opened := self.open_quote) is not None:
            return SourceProblem(line_at(path, opened), "quote opened here is never closed")
        return None


# Arrow's JSON parser recurses per nesting level and crashes the process (SIGSEGV)
# somewhere between 3,000 and 10,000 levels; it also crashes on a document that is a
# bare ``null``. Lines are checked for both before Arrow sees their block.
MAX_JSON_DEPTH = 256
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth(line: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in one JSON text (strings skipped)."""
    depth = deepest = 0
    for token in _JSON_TOKENS.finditer(line):
        kind = token.group()[:1]
        if kind in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif kind in (b"]", b"}"):
            depth -= 1
    return deepest


class JsonlScan:
    """Finds what Arrow reads wrongly or crashes on, before Arrow sees the block.

    - a line that is not a JSON object (``null``, ``[1]``, ``5``): Arrow crashes on some;
    - nesting deeper than :data:`MAX_JSON_DEPTH` levels (Arrow's parser overflows the stack);
    - integers beyond int64, which Arrow silently reads as doubles.

    Cheap in the usual case: vectorised looks at line starts, bracket counts and runs
    of 19 or more digits; only a suspicious line is examined in Python.
    """

    # Byte classes: 1 digit, 2 a byte after which digits are no integer ('.', '"'), 0 other.
    _LONG_RUN = b"\x00" + b"\x01" * 19

    def __init__(self) -> None:
        self._offset = 0  # where the bytes held in _tail start
        self._tail: list[bytes] = []  # the current, incomplete line
        self._found: tuple[int, str, str] | None = None  # offset of the line, message, field

    @property
    def failed(self) -> bool:
        return self._found is not None

    def feed(self, data: bytes) -> None:
        if self._found is not None:
            return
        if not data:
            lines, self._tail = b"".join(self._tail), []
        else:
            cut = data.rfind(b"\n")
            if cut < 0:
                self._tail.append(data)
                return
            lines = b"".join([*self._tail, data[: cut + 1]]) if self._tail else data[: cut + 1]
            self._tail = [data[cut + 1 :]] if cut + 1 < len(data) else []
        start = self._offset
        self._offset += len(lines)
        if lines:
            self._check(lines, start)

    def _check_shape(self, lines: bytes, data: npt.NDArray[np.uint8], start: int) -> bool:
        """Objects only, not nested too deeply; False (and the problem recorded) otherwise."""
        starts = np.concatenate(([0], np.flatnonzero(data == ord("\n")) + 1))
        starts = starts[starts < len(data)]
        first = data[starts]
        odd = np.flatnonzero((first != ord("{")) & (first != ord("\n")))
        for begin in starts[odd]:
            end = lines.find(b"\n", begin)
            line = lines[begin : len(lines) if end < 0 else end].strip()
            if line and not line.startswith(b"{"):
                kind = "null" if line == b"null" else "an array" if line.startswith(b"[") else "a scalar"
                self._found = (start + int(begin), f"expected a JSON object, got {kind}", "")
                return False
        opens = ((data == ord("[")) | (data == ord("{"))).astype(np.int64)
        per_line = np.add.reduceat(opens, starts) if len(starts) else np.zeros(0, dtype=np.int64)
        for begin in starts[np.flatnonzero(per_line > MAX_JSON_DEPTH)]:
            end = lines.find(b"\n", begin)
            if json_depth(lines[begin : len(lines) if end < 0 else end]) > MAX_JSON_DEPTH:
                message = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
                self._found = (start + int(begin), message, "")
                return False
        return True

    def _check(self, lines: bytes, start: int) -> None:
        data = np.frombuffer(lines, dtype=np.uint8)
        if not self._check_shape(lines, data, start):
            return
        digits = (data - ord("0")) < 10  # wraps around below '0'
        classes = (digits.view(np.uint8) | (((data == ord(".")) | (data == ord('"'))).view(np.uint8) << 1)).tobytes()
        at = classes.find(self._LONG_RUN)
        while at >= 0:
            begin = lines.rfind(b"\n", 0, at + 1) + 1
            end = lines.find(b"\n", at + 1)
            end = len(lines) if end < 0 else end
            try:
                found = big_int(loads_json(lines[begin:end]), "")
            except (ValueError, RecursionError):
                found = None  # not JSON (or nested past Python's limit): Arrow decides
            if found is not None:
                self._found = (start + begin, big_int_message(*found), found[0])
                return
            at = classes.find(self._LONG_RUN, end)

    def problem(self, path: pathlib.Path) -> SourceProblem | None:
        if self._found is None:
            return None
        offset, message, field = self._found
        return SourceProblem(line_at(path, offset), message, field)
