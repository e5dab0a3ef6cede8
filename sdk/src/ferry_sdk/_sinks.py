"""Where a download goes: memory (returned as bytes) or a file written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import tempfile
from typing import IO

import grpc

from ferry_sdk import errors
from ferry_sdk._sources import Progress

__all__ = ["Sink"]


class Sink:
    """Collects a streamed download; :meth:`finish` checks its sha256 and returns it.

    A file download is written to a temporary file beside ``path`` and renamed into
    place only when complete, so a broken stream never leaves a partial file.
    """

    def __init__(self, path: str | os.PathLike[str] | None, progress: Progress | None = None) -> None:
        self._path = pathlib.Path(path) if path is not None else None
        self._progress = progress
        self._digest = hashlib.sha256()
        self.total: int | None = None
        self.done = 0
        self._file: IO[bytes]
        self._temp: pathlib.Path | None = None
        if self._path is None:
            self._file = io.BytesIO()
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{self._path.name}.", suffix=".part", dir=self._path.parent)
            self._file = os.fdopen(handle, "wb")
            self._temp = pathlib.Path(name)

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._digest.update(chunk)
        self.done += len(chunk)
        if self._progress is not None:
            self._progress(self.done, self.total)

    def finish(self, expected_sha256: str = "") -> bytes | pathlib.Path:
        """The bytes (memory) or the final path (file); raises DATA_LOSS on a sha256 mismatch."""
        if expected_sha256 and self._digest.hexdigest() != expected_sha256.lower():
            self.abort()
            raise errors.FerryError(
                f"downloaded bytes have sha256 {self._digest.hexdigest()}, the registry recorded {expected_sha256}",
                code=grpc.StatusCode.DATA_LOSS,
            )
        if self._path is None:
            assert isinstance(self._file, io.BytesIO)
            return self._file.getvalue()
        self._file.close()
        assert self._temp is not None
        os.replace(self._temp, self._path)
        return self._path

    def abort(self) -> None:
        """Drop what was received (a file download leaves nothing behind)."""
        self._file.close()
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()
