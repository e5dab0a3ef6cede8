"""Ingest's use of the object store: staged version objects and import sources.

A version's objects live under ``datasets/<dataset>/versions/<n>/`` and a version
number is only final at commit (see :mod:`ferry_ingest.store`). To keep large
uploads off the commit's critical path, an object may be *staged*: on S3 its
multipart upload to the tentative key starts while the data is still arriving, and
only its completion waits for the commit, which completes it when the
tentative number won (the usual case) or aborts it and uploads the local copy under
the number that won. Until completion nothing is visible at the key; an upload
abandoned by a crash is an incomplete multipart upload that S3 never shows (and a
bucket lifecycle rule or :meth:`S3ObjectStore.client` housekeeping removes).
On the local backend an object is simply copied in (atomically) at commit.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

import urllib3
from minio.datatypes import Part
from minio.error import S3Error

from ferry_common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable
from ferry_common.objectstore import ObjectStore, S3ObjectStore
from ferry_common.settings import S3Settings
from ferry_ingest.spool import Spool, SpoolAborted

# Memory per staged upload is about two parts; 8 MiB parts allow objects up to 80 GB
# (S3's 10,000-part limit). Parts go one at a time: the upload follows data still
# being produced, so parallel parts buy little and cost memory.
STAGE_PART_BYTES = 8 * 1024 * 1024

__all__ = [
    "ObjectSource",
    "PreparedObject",
    "StagedObject",
    "open_object_source",
    "prepare_object",
    "stages_uploads",
]


class StagedObject(Protocol):
    """An upload to a key that becomes visible only when completed."""

    def complete(self) -> None:
        """Make the object visible at its key (raises if the upload failed)."""

    def abort(self) -> None:
        """Give the upload up; nothing becomes visible."""


class HeldReader(Protocol):
    """A reader whose end of file waits for :meth:`release_eof` (or raises after :meth:`cancel`)."""

    def read(self, size: int = -1) -> bytes: ...

    def release_eof(self) -> None: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class _S3StagedUpload:
    """A multipart upload fed by a reader whose end of file is held back."""

    def __init__(self, store: S3ObjectStore, key: str, reader: HeldReader) -> None:
        self._store = store
        self._key = key
        self._reader = reader
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"stage {key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Every part, the last one included, goes up as soon as its bytes exist (a
        # read shorter than a part happens only at the end of the data); only the
        # completion waits for the held end of file, i.e. for the commit.
        client = self._store.client
        bucket = self._store.bucket
        name = f"{self._store.prefix}/{self._key}" if self._store.prefix else self._key
        upload_id = ""
        try:
            parts: list[Part] = []
            while data := self._reader.read(STAGE_PART_BYTES):
                if not upload_id:
                    upload_id = client._create_multipart_upload(bucket, name, {})
                etag = client._upload_part(bucket, name, data, None, upload_id, len(parts) + 1)
                parts.append(Part(len(parts) + 1, etag))
            if parts:
                client._complete_multipart_upload(bucket, name, upload_id, parts)
            else:
                client.put_object(bucket, name, io.BytesIO(b""), 0)
        except BaseException as exc:  # reported by complete()
            self._error = exc
            if upload_id:
                with contextlib.suppress(Exception):
                    client._abort_multipart_upload(bucket, name, upload_id)
        finally:
            self._reader.close()

    def complete(self) -> None:
        self._reader.release_eof()
        self._thread.join()
        if self._error is not None:
            raise Unavailable(
                f"object store {self._store.endpoint}: writing {self._key!r} failed: {self._error}"
            ) from None

    def abort(self) -> None:
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


def stages_uploads(store: ObjectStore) -> bool:
    """Whether objects for ``store`` are uploaded ahead of the commit (S3)."""
    return isinstance(store, S3ObjectStore)


def prepare_object(
    store: ObjectStore, relkey: str, path: pathlib.Path, tentative_key: str | None, spool: Spool | None = None
) -> PreparedObject:
    """Start staging ``path`` at ``tentative_key`` when the backend gains from it.

    ``spool`` is the growing file ``path`` belongs to, when it is still being
    written; the staged upload then follows it.
    """
    if tentative_key is None or not isinstance(store, S3ObjectStore):
        return PreparedObject(relkey, path)
    reader: HeldReader = spool.reader(hold_eof=True) if spool is not None else _FileReader(path)
    return PreparedObject(relkey, path, _S3StagedUpload(store, tentative_key, reader))


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
    raise InvalidArgument(f"{field}: {uri!r} is not an s3:// or file:// URI", field=field)


def _open_s3(
    uri: str, bucket: str, key: str, extension: str, s3: S3Settings, allowed: frozenset[str], field: str
) -> ObjectSource:
    if not bucket or not key:
        raise InvalidArgument(f"{field}: {uri!r} is not of the form s3://bucket/key", field=field)
    if not allowed:
        raise FailedPrecondition(
            f"{field}: {uri!r}: s3:// imports are off on this server; the operator must list the buckets "
            "they may read in FERRY_INGEST_IMPORT_S3_BUCKETS",
            field=field,
        )
    if bucket not in allowed:
        raise PermissionDenied(
            f"{field}: {uri!r}: bucket {bucket!r} is not one of FERRY_INGEST_IMPORT_S3_BUCKETS "
            f"({', '.join(sorted(allowed))})",
            field=field,
        )
    store = S3ObjectStore(s3, bucket)
    try:
        store.client.stat_object(bucket, key)
        chunks = store.iter_chunks(key, 4 * 1024 * 1024)
    except S3Error as exc:
        if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket"}:
            raise NotFound(f"{field}: {uri!r} not found at {s3.endpoint}", field=field) from None
        if exc.code in {"AccessDenied", "Forbidden"}:
            raise PermissionDenied(
                f"{field}: {uri!r}: the server's credentials may not read it at {s3.endpoint}", field=field
            ) from None
        raise Unavailable(f"{field}: reading {uri!r} from {s3.endpoint} failed: {exc.code}", field=field) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(
            f"{field}: reading {uri!r}: cannot reach the S3 endpoint {s3.endpoint} ({type(exc).__name__})",
            field=field,
        ) from None
    return ObjectSource(uri, _s3_chunks(chunks, uri, s3.endpoint, field), extension)


def _s3_chunks(chunks: Iterator[bytes], uri: str, endpoint: str, field: str) -> Iterator[bytes]:
    """``chunks``, with a connection lost half way reported as UNAVAILABLE."""
    try:
        yield from chunks
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(
            f"{field}: reading {uri!r}: the S3 endpoint {endpoint} failed mid-stream ({type(exc).__name__})",
            field=field,
        ) from None


def _open_file(
    uri: str, host: str, raw_path: str, extension: str, roots: tuple[pathlib.Path, ...], field: str
) -> ObjectSource:
    if not roots:
        raise FailedPrecondition(
            f"{field}: {uri!r}: file:// imports are off on this server; the operator must set "
            "FERRY_INGEST_IMPORT_FILE_ROOTS to the directories they may read",
            field=field,
        )
    if host and host.lower() != "localhost":
        raise InvalidArgument(
            f"{field}: {uri!r} names host {host!r}; a file:// URI names a path on this server (file:///path)",
            field=field,
        )
    if "\x00" in raw_path or not raw_path.startswith("/"):
        raise InvalidArgument(f"{field}: {uri!r} is not of the form file:///absolute/path", field=field)
    # The URI is decoded above, so %2e%2e is a plain `..` by now; resolve() then removes
    # `..` and follows every symlink, and the real path is what must lie under a root.
    path = pathlib.Path(raw_path).resolve()
    if not _under(path, roots):
        raise PermissionDenied(f"{field}: {uri!r} is outside FERRY_INGEST_IMPORT_FILE_ROOTS", field=field)
    descriptor = _open_regular(path)
    if descriptor is None:
        raise NotFound(f"{field}: {uri!r} does not exist or is not a file", field=field)
    # What was opened, not what was checked, must be under a root: a directory swapped
    # for a symlink between the two would otherwise lead out.
    opened = _descriptor_path(descriptor)
    if opened is not None and not _under(opened, roots):
        os.close(descriptor)
        raise PermissionDenied(f"{field}: {uri!r} is outside FERRY_INGEST_IMPORT_FILE_ROOTS", field=field)
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
