"""An append-only temporary file that readers follow while it is being written.

Uploads are spooled to disk as they arrive (hashing on the way), and the CSV/JSONL
converter and the S3 uploader read the same file concurrently, each at its own
pace: memory stays bounded whatever the file size, and conversion overlaps the
transfer. A reader blocks until the bytes it asked for are written or the spool is
closed; a spool that failed makes every reader raise.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import threading

__all__ = ["Spool", "SpoolAborted", "SpoolReader"]


class SpoolAborted(Exception):
    """The spool was abandoned (the upload failed or was cancelled)."""


class Spool:
    """A file written once, front to back, and readable while it grows.

    Args:
        path: where to create the file (it must not exist).
        hashed: keep a SHA-256 of what :meth:`write` appends (:meth:`sha256`).
    """

    def __init__(self, path: pathlib.Path, *, hashed: bool = True) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = 0
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._hash = hashlib.sha256() if hashed else None

    @property
    def size(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    def sha256(self) -> str:
        """Hex digest of everything written (call after :meth:`close`; only for a ``hashed`` spool)."""
        if self._hash is None:
            raise ValueError(f"spool {self.path.name} keeps no hash")
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        """Append ``data`` (blocking I/O: call from a worker thread)."""
        if self._closed:
            raise SpoolAborted(f"spool {self.path.name} is closed")
        view = memoryview(data)
        if self._hash is not None:
            self._hash.update(view)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        with self._cond:
            self._size += len(data)
            self._cond.notify_all()

    def written_to(self, size: int) -> None:
        """Another writer (Arrow's own file stream) has written the file up to ``size`` bytes.

        For a spool that is not ``hashed``; readers may now read that far.
        """
        if self._hash is not None:
            raise ValueError(f"spool {self.path.name} hashes what is written: use write()")
        with self._cond:
            if self._closed:
                raise SpoolAborted(f"spool {self.path.name} is closed")
            if size > self._size:
                self._size = size
                self._cond.notify_all()

    def close(self) -> None:
        """Mark the end of the data; readers then see end of file."""
        with self._cond:
            if not self._closed:
                os.close(self._fd)
                self._closed = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """Abandon the spool: blocked and later reads raise :class:`SpoolAborted`."""
        with self._cond:
            self._error = error
            if not self._closed:
                os.close(self._fd)
                self._closed = True
            self._cond.notify_all()

    def wait_closed(self) -> None:
        """Block until the spool is complete (raises if it was abandoned)."""
        with self._cond:
            while not self._closed:
                self._cond.wait()
            if self._error is not None:
                raise SpoolAborted(f"spool {self.path.name} was abandoned") from self._error

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def reader(self, *, hold_eof: bool = False) -> SpoolReader:
        """A new reader from the start. ``hold_eof``: see :class:`SpoolReader`."""
        return SpoolReader(self, hold_eof=hold_eof)

    def _wait(self, position: int, wanted: int, reader: SpoolReader) -> int:
        """Block until ``wanted`` bytes after ``position`` exist or the spool ends.

        Returns how many bytes can be read now (0: end of file).
        """
        with self._cond:
            while True:
                if self._error is not None or reader.cancelled:
                    raise SpoolAborted(f"spool {self.path.name} was abandoned") from self._error
                available = self._size - position
                if available >= wanted and available > 0:
                    return wanted
                if self._closed:
                    if available > 0:
                        return available
                    if not reader.hold_eof or reader.eof_released:
                        return 0
                self._cond.wait()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()


class SpoolReader:
    """A file-like reader of a :class:`Spool` (``read``, ``tell``, ``close``).

    With ``hold_eof``, the reader does not report end of file when the spool is
    complete until :meth:`release_eof` is called: an S3 upload reading it keeps the
    object's completion back until the version is committed.
    :meth:`cancel` makes a blocked or later read raise instead.
    """

    def __init__(self, spool: Spool, *, hold_eof: bool = False) -> None:
        self._spool = spool
        self._file = open(spool.path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._position = 0
        self.hold_eof = hold_eof
        self.eof_released = False
        self.cancelled = False

    @property
    def closed(self) -> bool:
        return self._file.closed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 62
        if size == 0:
            return b""
        count = self._spool._wait(self._position, size, self)
        if count == 0:
            return b""
        chunks = []
        while count:
            data = self._file.read(count)
            if not data:
                break
            chunks.append(data)
            count -= len(data)
            self._position += len(data)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def release_eof(self) -> None:
        self.eof_released = True
        self._spool._notify()

    def cancel(self) -> None:
        self.cancelled = True
        self._spool._notify()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
