"""What an upload accepts (a path, bytes, a binary file, a pandas DataFrame) as 1 MiB chunks.

Shared by the sync and asyncio clients: :func:`open_source` turns the caller's input
into a :class:`Source` (a readable binary stream, its size when known, its format
hint), and both flavours read it chunk by chunk, reporting progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "CHUNK_BYTES",
    "BinaryReader",
    "Chunks",
    "Progress",
    "Source",
    "UploadInput",
    "is_dataframe",
    "open_source",
    "sha256_of",
]

CHUNK_BYTES = 1024 * 1024

Progress: TypeAlias = Callable[[int, int | None], None]
"""A progress callback: ``(bytes_done, total_bytes or None when unknown)``."""


@runtime_checkable
class BinaryReader(Protocol):
    """A binary file object opened for reading."""

    def read(self, size: int = -1, /) -> bytes: ...


UploadInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryReader | Any"
"""A path, bytes, a binary file object, or (datasets only) a pandas DataFrame."""


@dataclass
class Source:
    """An opened upload input.

    Attributes:
        stream: where the bytes come from (closed by :meth:`close` when we opened it).
        size: total bytes when known (for progress), else ``None``.
        suffix: the file name's extension (``.csv``) when there is a name, for the format.
        head: the first bytes when they could be peeked without consuming them.
        owned: whether :meth:`close` closes ``stream``.
    """

    stream: IO[bytes] | BinaryReader
    size: int | None
    suffix: str
    head: bytes
    owned: bool

    def close(self) -> None:
        if self.owned:
            close = getattr(self.stream, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_dataframe(value: object) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas."""
    return any(f"{cls.__module__}.{cls.__qualname__}" == "pandas.core.frame.DataFrame" for cls in type(value).__mro__)


def _dataframe_bytes(frame: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "parquet":
        frame.to_parquet(buffer, index=False)
    elif fmt == "jsonl":
        frame.to_json(buffer, orient="records", lines=True)
    else:
        frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def dataframe_format(frame: Any, requested: str | None) -> str:
    """Parquet keeps column types, so it is the default when pyarrow is installed; else CSV."""
    if requested:
        return requested
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "csv"
    return "parquet"


def _stream_size(stream: Any) -> int | None:
    with contextlib.suppress(OSError, AttributeError, ValueError, io.UnsupportedOperation):
        if stream.seekable():
            position = stream.tell()
            end = stream.seek(0, os.SEEK_END)
            stream.seek(position)
            return int(end - position)
    return None


def _peek(stream: Any, size: int = 8) -> bytes:
    with contextlib.suppress(OSError, AttributeError, ValueError, io.UnsupportedOperation):
        if stream.seekable():
            position = stream.tell()
            head = stream.read(size)
            stream.seek(position)
            return bytes(head)
    return b""


def open_source(value: UploadInput, *, dataframe_fmt: str | None = None) -> Source:
    """Open an upload input.

    Args:
        value: a path (``str`` or ``os.PathLike``), ``bytes``-like, a binary file
            object, or a pandas DataFrame.
        dataframe_fmt: the format a DataFrame is written in (``csv``, ``parquet``,
            ``jsonl``); ``None`` refuses DataFrames.

    Raises:
        TypeError: an input of another kind (a text file, a str that is not a path...).
        FileNotFoundError: the path does not exist.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return Source(io.BytesIO(data), len(data), "", data[:8], owned=True)
    if isinstance(value, str | os.PathLike):
        path = pathlib.Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"upload source {str(path)!r} is not a file")
        stream = path.open("rb")
        return Source(stream, path.stat().st_size, "".join(path.suffixes[-1:]).lower(), _peek(stream), owned=True)
    if is_dataframe(value):
        if dataframe_fmt is None:
            raise TypeError("a DataFrame cannot be uploaded here")
        data = _dataframe_bytes(value, dataframe_fmt)
        return Source(io.BytesIO(data), len(data), f".{dataframe_fmt}", data[:8], owned=True)
    if isinstance(value, io.TextIOBase):
        raise TypeError("upload source is a text file: open it in binary mode ('rb')")
    if isinstance(value, BinaryReader):
        name = getattr(value, "name", None)
        suffix = pathlib.Path(name).suffix.lower() if isinstance(name, str) else ""
        return Source(value, _stream_size(value), suffix, _peek(value), owned=False)
    raise TypeError(
        f"cannot upload a {type(value).__name__}: give a path, bytes, a binary file object or a pandas DataFrame"
    )


class Chunks:
    """``source`` as chunks, reporting progress after each one.

    gRPC consumes a request iterator on its own and turns an exception raised there
    (a failing read, a progress callback that raises) into a bare CANCELLED; the
    exception is kept in :attr:`error` so the client can raise it instead.
    """

    def __init__(self, source: Source, progress: Progress | None, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.source = source
        self.progress = progress
        self.chunk_bytes = chunk_bytes
        self.done = 0
        self.error: BaseException | None = None

    def advance(self, chunk: bytes) -> None:
        self.done += len(chunk)
        if self.progress is not None:
            self.progress(self.done, self.source.size)

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self.source.stream.read(self.chunk_bytes):
                yield bytes(chunk)
                self.advance(chunk)
        except Exception as error:
            self.error = error
            raise

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Reads run off the event loop: a file may be slow.
        try:
            while chunk := await asyncio.to_thread(self.source.stream.read, self.chunk_bytes):
                yield bytes(chunk)
                self.advance(chunk)
        except Exception as error:
            self.error = error
            raise


def sha256_of(source: Source) -> str | None:
    """The hex sha256 of a seekable source (its position kept), or ``None`` when it cannot rewind."""
    stream: Any = source.stream
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    digest = hashlib.sha256()
    while block := stream.read(CHUNK_BYTES):
        digest.update(block)
    stream.seek(position)
    return digest.hexdigest()
