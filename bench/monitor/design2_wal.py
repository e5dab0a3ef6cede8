"""A segmented write-ahead log of raw OTLP requests (bench-only; design 2 of the monitor bench).

One log per partition, a directory of segment files named by the logical offset of their
first byte (``00000000000000000000.wal``). Offsets are byte positions in the partition's
whole history, so an offset names a record boundary for ever, across segments.

A record is ``<length u32><crc32 u32><payload>``. The writer appends with ``os.write`` (no
user-space buffer: what :meth:`LogWriter.sync` fsyncs is everything appended before it);
:class:`GroupSync` makes concurrent appenders share one fsync. On open, the writer checks the
last segment and truncates a torn tail (a short or corrupt last record: written, never
fsynced, never acknowledged). The reader returns records between two offsets; segments wholly
before an offset that the consumer committed are deleted with :meth:`LogReader.delete_before`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pathlib
import struct
import zlib
from collections.abc import Callable

__all__ = ["GroupSync", "LogReader", "LogWriter", "segments"]

_HEADER = struct.Struct("<II")
_SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


def segments(directory: pathlib.Path) -> list[int]:
    """Start offsets of the segments in ``directory``, ascending."""
    return sorted(int(path.stem) for path in directory.glob(f"*{_SUFFIX}"))


def _segment_path(directory: pathlib.Path, start: int) -> pathlib.Path:
    return directory / f"{start:020d}{_SUFFIX}"


def _fsync_directory(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _valid_length(data: bytes) -> int:
    """Bytes of ``data`` (a segment) made of whole records with good checksums."""
    position = 0
    while position + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, position)
        end = position + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[position + _HEADER.size : end]) != crc:
            break
        position = end
    return position


class LogWriter:
    """Appends records to the newest segment of ``directory``.

    :class:`GroupSync` rotates to a new segment at the first group fsync after the segment
    passed ``segment_bytes`` (a soft limit: a segment ends on a record boundary).
    """

    def __init__(self, directory: pathlib.Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        starts = segments(directory)
        if not starts:
            starts = [0]
            _segment_path(directory, 0).touch()
            _fsync_directory(directory)
        self._start = starts[-1]
        path = _segment_path(directory, self._start)
        data = path.read_bytes()
        valid = _valid_length(data)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if valid < len(data):  # a torn tail: never acknowledged (not fsynced when it was written)
            os.ftruncate(self.fd, valid)
            os.fsync(self.fd)
        self._size = valid
        self.end = self._start + valid

    def append(self, payload: bytes) -> int:
        """Write one record (not yet durable); returns the offset just past it."""
        header = _HEADER.pack(len(payload), zlib.crc32(payload))
        written = os.writev(self.fd, [header, payload])
        if written != len(header) + len(payload):  # regular files write whole; guard anyway
            raise OSError(f"short write to the log: {written} of {len(header) + len(payload)} bytes")
        self._size += written
        self.end += written
        return self.end

    @property
    def full(self) -> bool:
        return self._size >= self.segment_bytes

    def rotate(self) -> None:
        """Durably close the current segment and start the next one (call with no fsync in flight)."""
        os.fsync(self.fd)
        os.close(self.fd)
        self._start = self.end
        path = _segment_path(self.directory, self._start)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fsync_directory(self.directory)
        self._size = 0

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


class GroupSync:
    """Group fsync for a :class:`LogWriter` on an event loop: one fsync serves every append before it.

    ``on_durable`` is told each new durable offset (to publish it to the consumer).
    """

    def __init__(self, writer: LogWriter, on_durable: Callable[[int], None]) -> None:
        self._writer = writer
        self._on_durable = on_durable
        self.durable = writer.end
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        on_durable(self.durable)

    async def wait(self, offset: int) -> None:
        """Return once everything up to ``offset`` is fsynced."""
        if offset <= self.durable:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((offset, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        while self._waiters:
            target, fd = self._writer.end, self._writer.fd
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as error:
                waiters, self._waiters = self._waiters, []
                for _, future in waiters:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.durable = target
            self._on_durable(target)
            still: list[tuple[int, asyncio.Future[None]]] = []
            for offset, future in self._waiters:
                if offset <= target:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((offset, future))
            self._waiters = still
            if self._writer.full:
                # No fsync is in flight here; rotate fsyncs what was appended since the one above.
                self._writer.rotate()
                self.durable = self._writer.end
                self._on_durable(self.durable)
                for _, future in self._waiters:
                    if not future.done():
                        future.set_result(None)
                self._waiters = []


class LogReader:
    """Reads records of a partition's log by offset."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self._start = -1
        self._fd: int | None = None

    def _open_for(self, offset: int) -> None:
        starts = segments(self.directory)
        start = max((s for s in starts if s <= offset), default=None)
        if start is None:
            raise FileNotFoundError(f"{self.directory}: no segment holds offset {offset} (first is {starts[:1]})")
        if start != self._start or self._fd is None:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(_segment_path(self.directory, start), os.O_RDONLY)
            self._start = start

    def read(self, offset: int, until: int, max_bytes: int) -> list[tuple[bytes, int]]:
        """Records from ``offset`` (a record boundary) up to ``until`` (durable), about ``max_bytes`` of them.

        Returns (payload, offset past the record) pairs.
        """
        found: list[tuple[bytes, int]] = []
        taken = 0
        while offset < until and taken < max_bytes:
            if self._fd is None or offset < self._start:
                self._open_for(offset)
            assert self._fd is not None
            header = os.pread(self._fd, _HEADER.size, offset - self._start)
            if len(header) < _HEADER.size:
                # The end of this segment: the writer rotated, and the next segment starts here.
                if self._start == offset:
                    raise OSError(f"{self.directory}: log ends at {offset} before the durable offset {until}")
                self._open_for(offset)
                if self._start != offset:
                    raise OSError(f"{self.directory}: no segment starts at {offset} (durable offset {until})")
                continue
            length, crc = _HEADER.unpack(header)
            payload = os.pread(self._fd, length, offset - self._start + _HEADER.size)
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise OSError(f"{self.directory}: corrupt record at offset {offset}")
            offset += _HEADER.size + length
            taken += length
            found.append((payload, offset))
        return found

    def delete_before(self, offset: int) -> int:
        """Delete segments that end at or before ``offset`` (committed); returns how many."""
        starts = segments(self.directory)
        deleted = 0
        for start, following in itertools.pairwise(starts):
            if following <= offset and start != self._start:
                _segment_path(self.directory, start).unlink()
                deleted += 1
        return deleted

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
