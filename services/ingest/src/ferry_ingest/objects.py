"""Ingest's use of the object store: staged version objects and import sources.

A version's objects live under ``datasets/<dataset>/versions/<n>/`` and a version
number is only final at commit (see :mod:`ferry_ingest.store`). To keep large
uploads off the commit's critical path, an object may be *staged*: a staged upload
(:meth:`ObjectStore.begin_staged`) to the tentative key is fed part by part while the
data is still arriving, and only its commit waits for the version's commit, which
commits it when the tentative number won (the usual case) or aborts it and uploads the
local copy under the number that won. Until then nothing is visible at the key (on S3
an upload abandoned by a crash is an incomplete multipart upload that S3 never shows
and a bucket lifecycle rule removes). Objects are staged where the store says it gains
something (:attr:`ObjectStore.stages_ahead`: S3); on the local backend an object is
simply copied in (atomically) at commit.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

import urllib3
from minio.error import S3Error

from ferry_common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable
from ferry_common.names import shorten
from ferry_common.objectstore import ObjectInfo, ObjectStore, S3ObjectStore, StagedUpload
from ferry_common.settings import S3Settings
from ferry_ingest.spool import Spool, SpoolAborted

# Memory per staged upload is about two parts; 8 MiB parts allow objects up to 80 GB
# (S3's 10,000-part limit) and are above its 5 MiB minimum. Parts go one at a time: the
# upload follows data still being produced, so parallel parts buy little and cost memory.
STAGE_PART_BYTES = 8 * 1024 * 1024

__all__ = [
    "ObjectSource",
    "PreparedObject",
    "StagedObject",
    "open_object_source",
    "prepare_object",
]


class HeldReader(Protocol):
    """A reader whose end of file waits for :meth:`release_eof` (or raises after :meth:`cancel`)."""

    def read(self, size: int = -1) -> bytes: ...

    def release_eof(self) -> None: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class StagedObject:
    """A staged upload fed by a reader whose end of file is held back, from its own thread.

    Works on every backend; :func:`prepare_object` starts one only where the store
    gains from it.
    """

    def __init__(self, store: ObjectStore, key: str, reader: HeldReader) -> None:
        self._key = key
        self._reader = reader
        try:
            self._upload: StagedUpload = store.begin_staged(key)
        except BaseException:
            reader.close()
            raise
        self._info: ObjectInfo | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"stage {key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Every part, the last one included, goes up as soon as its bytes exist (a
        # read shorter than a part happens only at the end of the data, so only the
        # last part is short); only the commit waits for the held end of file, i.e.
        # for the version's commit.
        try:
            while data := self._reader.read(STAGE_PART_BYTES):
                self._upload.put_part(data)
            self._info = self._upload.commit()
        except BaseException as exc:  # reported by complete()
            self._error = exc
            with contextlib.suppress(Exception):
                self._upload.abort()
        finally:
            self._reader.close()

    def complete(self) -> ObjectInfo:
        """Make the object visible at its key (Unavailable if the upload failed)."""
        self._reader.release_eof()
        self._thread.join()
        if self._info is None:
            if isinstance(self._error, Unavailable):
                raise self._error
            raise Unavailable(f"staging {self._key!r} failed: {self._error!r}") from None
        return self._info

    def abort(self) -> None:
        """Give the upload up; nothing becomes visible."""
        self._reader.cancel()
        self._thread.join()


@dataclass
class PreparedObject:
    """One object of a version being written.

    Attributes:
        relkey: key under the version prefix (``data.parquet``, ``splits/train.parquet``).
        path: the complete local file (the source of truth for a re-upload).
        staged: an upload already under way to the tentative version's key, if any.
    """

    relkey: str
    path: pathlib.Path
    staged: StagedObject | None = None

    def discard_stage(self) -> None:
        if self.staged is not None:
            self.staged.abort()
            self.staged = None


def prepare_object(
    store: ObjectStore, relkey: str, path: pathlib.Path, tentative_key: str | None, spool: Spool | None = None
) -> PreparedObject:
    """Start staging ``path`` at ``tentative_key`` when the store gains from it (``stages_ahead``).

    ``spool`` is the growing file ``path`` belongs to, when it is still being
    written; the staged upload then follows it.
    """
    if tentative_key is None or not store.stages_ahead:
        return PreparedObject(relkey, path)
    reader: HeldReader = spool.reader(hold_eof=True) if spool is not None else _FileReader(path)
    return PreparedObject(relkey, path, StagedObject(store, tentative_key, reader))


class _FileReader:
    """A plain file reader with the hold/cancel interface of :class:`SpoolReader`."""

    def __init__(self, path: pathlib.Path) -> None:
        self._file = path.open("rb")
        self._gate = threading.Event()
        self.cancelled = False

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if not data:
            self._gate.wait()
            if self.cancelled:
                raise SpoolAborted("staged upload cancelled")
        return data

    def release_eof(self) -> None:
        self._gate.set()

    def cancel(self) -> None:
        self.cancelled = True
        self._gate.set()

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------- import sources


@dataclass(frozen=True)
class ObjectSource:
    """An object named by an import's ``object.uri``."""

    uri: str
    chunks: Iterator[bytes]
    extension: str


def open_object_source(
    uri: str,
    s3: S3Settings,
    file_roots: tuple[pathlib.Path, ...],
    s3_buckets: frozenset[str] = frozenset(),
    field: str = "object.uri",
) -> ObjectSource:
    """Open ``s3://bucket/key`` (through the configured S3 endpoint) or ``file:///path``.

    Only what the operator allows is read: files under ``file_roots``
    (FERRY_INGEST_IMPORT_FILE_ROOTS; none: file imports are off) and objects in
    ``s3_buckets`` (FERRY_INGEST_IMPORT_S3_BUCKETS; none: S3 imports are off).

    Raises:
        InvalidArgument: not such a URI (or a ``file://`` URI naming another host).
        FailedPrecondition: that kind of import is off on this server.
        PermissionDenied: a path outside the roots (after resolving ``..`` and symlinks),
            a bucket outside the list, or an object the server's credentials cannot read.
        NotFound: the object or file does not exist.
        Unavailable: the S3 endpoint cannot be reached.
    """
    parsed = urlsplit(uri)
    extension = pathlib.PurePosixPath(unquote(parsed.path)).suffix.lower().lstrip(".")
    if parsed.scheme == "s3":
        return _open_s3(uri, parsed.netloc, unquote(parsed.path).lstrip("/"), extension, s3, s3_buckets, field)
    if parsed.scheme == "file":
        return _open_file(uri, parsed.netloc, unquote(parsed.path), extension, file_roots, field)
    raise InvalidArgument(f"{field}: {shorten(uri)} is not an s3:// or file:// URI", field=field)


def _open_s3(
    uri: str, bucket: str, key: str, extension: str, s3: S3Settings, allowed: frozenset[str], field: str
) -> ObjectSource:
    if not bucket or not key:
        raise InvalidArgument(f"{field}: {shorten(uri)} is not of the form s3://bucket/key", field=field)
    if not allowed:
        raise FailedPrecondition(
            f"{field}: {shorten(uri)}: s3:// imports are off on this server; the operator must list the buckets "
            "they may read in FERRY_INGEST_IMPORT_S3_BUCKETS",
            field=field,
        )
    if bucket not in allowed:
        raise PermissionDenied(
            f"{field}: {shorten(uri)}: bucket {shorten(bucket)} is not one of FERRY_INGEST_IMPORT_S3_BUCKETS "
            f"({', '.join(sorted(allowed))})",
            field=field,
        )
    store = S3ObjectStore(s3, bucket)
    try:
        store.client.stat_object(bucket, key)
        chunks = store.iter_chunks(key, 4 * 1024 * 1024)
    except S3Error as exc:
        if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket"}:
            raise NotFound(f"{field}: {shorten(uri)} not found at {s3.endpoint}", field=field) from None
        if exc.code in {"AccessDenied", "Forbidden"}:
            raise PermissionDenied(
                f"{field}: {shorten(uri)}: the server's credentials may not read it at {s3.endpoint}", field=field
            ) from None
        raise Unavailable(
            f"{field}: reading {shorten(uri)} from {s3.endpoint} failed: {exc.code}", field=field
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(
            f"{field}: reading {shorten(uri)}: cannot reach the S3 endpoint {s3.endpoint} ({type(exc).__name__})",
            field=field,
        ) from None
    return ObjectSource(uri, _s3_chunks(chunks, uri, s3.endpoint, field), extension)


def _s3_chunks(chunks: Iterator[bytes], uri: str, endpoint: str, field: str) -> Iterator[bytes]:
    """``chunks``, with a connection lost half way reported as UNAVAILABLE."""
    try:
        yield from chunks
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(
            f"{field}: reading {shorten(uri)}: the S3 endpoint {endpoint} failed mid-stream ({type(exc).__name__})",
            field=field,
        ) from None


def _open_file(
    uri: str, host: str, raw_path: str, extension: str, roots: tuple[pathlib.Path, ...], field: str
) -> ObjectSource:
    if not roots:
        raise FailedPrecondition(
            f"{field}: {shorten(uri)}: file:// imports are off on this server; the operator must set "
            "FERRY_INGEST_IMPORT_FILE_ROOTS to the directories they may read",
            field=field,
        )
    if host and host.lower() != "localhost":
        raise InvalidArgument(
            f"{field}: {shorten(uri)} names host {host!r}; a file:// URI names a path on this server (file:///path)",
            field=field,
        )
    if "\x00" in raw_path or not raw_path.startswith("/"):
        raise InvalidArgument(f"{field}: {shorten(uri)} is not of the form file:///absolute/path", field=field)
    # The URI is decoded above, so %2e%2e is a plain `..` by now; resolve() then removes
    # `..` and follows every symlink, and the real path is what must lie under a root.
    path = pathlib.Path(raw_path).resolve()
    if not _under(path, roots):
        raise PermissionDenied(f"{field}: {shorten(uri)} is outside FERRY_INGEST_IMPORT_FILE_ROOTS", field=field)
    descriptor = _open_regular(path)
    if descriptor is None:
        raise NotFound(f"{field}: {shorten(uri)} does not exist or is not a file", field=field)
    # What was opened, not what was checked, must be under a root: a directory swapped
    # for a symlink between the two would otherwise lead out.
    opened = _descriptor_path(descriptor)
    if opened is not None and not _under(opened, roots):
        os.close(descriptor)
        raise PermissionDenied(f"{field}: {shorten(uri)} is outside FERRY_INGEST_IMPORT_FILE_ROOTS", field=field)
    return ObjectSource(uri, _file_chunks(os.fdopen(descriptor, "rb")), extension)


def _under(path: pathlib.Path, roots: tuple[pathlib.Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _open_regular(path: pathlib.Path) -> int | None:
    """A read descriptor of the regular file ``path`` (None: missing, not a file, unreadable)."""
    # O_NOFOLLOW: the resolved path has no symlink left, so one appearing is refused;
    # O_NONBLOCK: a FIFO must not hang the call (it is refused just below anyway).
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return descriptor


def _descriptor_path(descriptor: int) -> pathlib.Path | None:
    """The real path of an open descriptor, where the system tells it (Linux's /proc)."""
    try:
        return pathlib.Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        return None


def _file_chunks(source: BinaryIO, size: int = 4 * 1024 * 1024) -> Iterator[bytes]:
    with source:
        while chunk := source.read(size):
            yield chunk
