"""The object-store interface shared by ingest and registry, and its two backends.

``FERRY_OBJECT_STORE_URL`` picks the backend: ``file:///path`` is a local
directory (the embedded default), ``s3://bucket[/prefix]`` any S3 endpoint through
the ``minio`` SDK (MinIO, AWS S3, moto, Swift). The interface is synchronous;
callers on an event loop use ``asyncio.to_thread``.

Writes are atomic: an object is either absent or complete. The local backend
writes a temporary file and renames it; S3 makes an object visible only when its
(multipart) upload completes. A *staged upload* (:meth:`ObjectStore.begin_staged`)
exposes that: parts are written while the data arrives and the object appears only at
:meth:`StagedUpload.commit`. minio's multipart calls are private in minio 7.2
(``_create_multipart_upload`` / ``_upload_part`` / ``_complete_multipart_upload`` /
``_abort_multipart_upload``, pinned in ``constraints.txt``): this module is the only
place that uses them; re-check them when upgrading minio.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlparse

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error

from ferry_common.errors import FailedPrecondition, NotFound, Unavailable
from ferry_common.settings import S3Settings, Settings

__all__ = [
    "MIN_PART_BYTES",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "StagedUpload",
    "open_object_store",
]

CHUNK_BYTES = 1024 * 1024
# Multipart part size: memory per upload is one part, whatever the object size.
PART_BYTES = 16 * 1024 * 1024
# S3's smallest part but the last; staged uploads hold every backend to it, so a caller
# tested on the local backend behaves the same on S3.
MIN_PART_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What was written."""

    key: str
    uri: str
    size_bytes: int
    sha256: str


class StagedUpload(Protocol):
    """An object written part by part that becomes visible at its key only at :meth:`commit`.

    Not thread-safe: one thread feeds it. After a failed :meth:`put_part` or
    :meth:`commit`, call :meth:`abort`.
    """

    @property
    def key(self) -> str:
        """The key the object appears at."""

    def put_part(self, data: bytes) -> None:
        """Write the next part now (blocking).

        Every part but the last must be at least :data:`MIN_PART_BYTES` (S3's rule, held on
        every backend): a part after a shorter one raises ``ValueError``. Empty parts are
        ignored. Raises Unavailable when the store fails.
        """

    def commit(self) -> ObjectInfo:
        """Make the object visible, complete (no parts: an empty object), and describe it."""

    def abort(self) -> None:
        """Give the upload up: nothing appears and nothing is left behind (no-op after commit or abort)."""


class ObjectStore(Protocol):
    """Keys are relative, ``/``-separated: ``datasets/penguins/versions/1/data.parquet``."""

    @property
    def stages_ahead(self) -> bool:
        """Whether staging an object before it is final gains anything over writing it then.

        True on S3: the parts travel over the network while the data is still being
        produced. False on the local backend: writing the file at the end is a quick
        local copy, whereas a file staged early is wasted when the key changes and stays
        in the store as a temporary file if the process dies before commit or abort.
        """

    def check(self) -> None:
        """Fail fast (Unavailable / FailedPrecondition naming what is wrong)."""

    def uri(self, key: str) -> str:
        """The URI standard tools use to read the object."""

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Write an object from a stream of chunks, hashing as it goes."""

    def put_file(self, key: str, path: pathlib.Path) -> ObjectInfo:
        """Write an object from a local file."""

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """Read an object as a stream of chunks (NotFound when absent)."""

    def begin_staged(self, key: str) -> StagedUpload:
        """Start an upload to ``key``; nothing is visible there until its commit."""

    def download(self, key: str, path: pathlib.Path) -> None:
        """Copy an object to a local file."""

    def open_local(self, key: str, scratch: pathlib.Path) -> AbstractContextManager[pathlib.Path]:
        """A local file holding the object, for the ``with`` block (blocking on enter and exit).

        The local backend yields the stored file itself (read it, never change it); S3
        downloads into a temporary file in the directory ``scratch`` and removes it on
        exit. NotFound when the object is absent.
        """

    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    def delete(self, key: str) -> None:
        """Delete an object (no error when absent)."""

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under a prefix."""

    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix, sorted."""


class _HashingReader:
    """A file-like view of an iterator of chunks that hashes what it hands out."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.sha256.update(data)
        self.size += len(data)
        return data


class LocalObjectStore:
    """Objects as files under a root directory."""

    # Writing at the end is a local copy; see ObjectStore.stages_ahead.
    stages_ahead = False

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> pathlib.Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise FailedPrecondition(f"object key {key!r} escapes the store root")
        return path

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FailedPrecondition(f"FERRY_OBJECT_STORE_URL: cannot create {str(self.root)!r}: {exc}") from None
        if not os.access(self.root, os.W_OK):
            raise FailedPrecondition(f"FERRY_OBJECT_STORE_URL: {str(self.root)!r} is not writable")

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        upload = _LocalStagedUpload(key, self._path(key))
        try:
            for chunk in chunks:
                upload.append(chunk)  # any chunk size: the part rule is S3's, not a file's
            return upload.commit()
        finally:
            upload.abort()

    def begin_staged(self, key: str) -> StagedUpload:
        return _LocalStagedUpload(key, self._path(key))

    def put_file(self, key: str, path: pathlib.Path) -> ObjectInfo:
        return self.put_chunks(key, _file_chunks(path))

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"object {key!r} not found in {self.root.as_uri()}")
        return _file_chunks(path, chunk_size)

    def download(self, key: str, path: pathlib.Path) -> None:
        with path.open("wb") as out:
            for chunk in self.iter_chunks(key):
                out.write(chunk)

    @contextlib.contextmanager
    def open_local(self, key: str, scratch: pathlib.Path) -> Iterator[pathlib.Path]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"object {key!r} not found in {self.root.as_uri()}")
        yield path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            self.delete(key)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        directory = base if base.is_dir() else base.parent
        if not directory.exists():
            return []
        keys = (
            path.relative_to(self.root).as_posix()
            for path in directory.rglob("*")
            if path.is_file() and not path.name.startswith(".tmp-")
        )
        return sorted(key for key in keys if key.startswith(prefix))


def _file_chunks(path: pathlib.Path, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(chunk_size):
            yield chunk


class _StagedParts:
    """What a staged upload wrote so far (hash, size) and S3's part rule, on every backend."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.finished = ""  # "committed" or "aborted"
        self._short = 0  # size of a part shorter than MIN_PART_BYTES already written

    def check_open(self) -> None:
        if self.finished:
            raise ValueError(f"staged upload of {self.key!r} was already {self.finished}")

    def check(self, data: bytes) -> None:
        self.check_open()
        if self._short:
            raise ValueError(
                f"staged upload of {self.key!r}: a part of {self._short} bytes came before this one; "
                f"only the last part may be shorter than {MIN_PART_BYTES} bytes"
            )
        if len(data) < MIN_PART_BYTES:
            self._short = len(data)

    def count(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)


class _LocalStagedUpload(_StagedParts):
    """A temporary file beside the object (``.tmp-*``, hidden from ``list``), renamed into place at commit."""

    def __init__(self, key: str, path: pathlib.Path) -> None:
        super().__init__(key)
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        self._tmp = pathlib.Path(tmp)
        self._file = os.fdopen(fd, "wb")

    def put_part(self, data: bytes) -> None:
        if data:
            self.check(data)
            self.append(data)

    def append(self, data: bytes) -> None:
        self._file.write(data)
        self.count(data)

    def commit(self) -> ObjectInfo:
        self.check_open()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._path)
        self.finished = "committed"
        return ObjectInfo(self.key, self._path.as_uri(), self.size, self.sha256.hexdigest())

    def abort(self) -> None:
        if self.finished:
            return
        self.finished = "aborted"
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class S3ObjectStore:
    """Objects in an S3 bucket, through the ``minio`` SDK."""

    # Parts travel while the data is produced; see ObjectStore.stages_ahead.
    stages_ahead = True

    def __init__(self, settings: S3Settings, bucket: str, prefix: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = settings.endpoint
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            maxsize=16,
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            http_client=http,
        )

    def _key(self, key: str) -> str:
        # minio refuses these names with a ValueError (an INTERNAL for the caller); the
        # local backend refuses keys escaping its root the same way.
        if any(part in (".", "..") for part in key.split("/")):
            raise FailedPrecondition(f"object key {key[:200]!r} has a '.' or '..' segment")
        return f"{self.prefix}/{key}" if self.prefix else key

    def check(self) -> None:
        try:
            found = self.client.bucket_exists(self.bucket)
        except S3Error as exc:
            if exc.code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}:
                raise FailedPrecondition(
                    f"FERRY_S3_ACCESS_KEY / FERRY_S3_SECRET_KEY: rejected by {self.endpoint} ({exc.code})"
                ) from None
            raise Unavailable(f"FERRY_S3_ENDPOINT {self.endpoint}: {exc.code}: {exc.message}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"FERRY_S3_ENDPOINT {self.endpoint}: cannot connect ({type(exc).__name__})") from None
        if not found:
            raise FailedPrecondition(
                f"FERRY_OBJECT_STORE_URL: bucket {self.bucket!r} does not exist at {self.endpoint}"
            )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        reader = _HashingReader(chunks)
        try:
            self.client.put_object(self.bucket, self._key(key), reader, length=-1, part_size=PART_BYTES)  # type: ignore[arg-type]
        except (urllib3.exceptions.HTTPError, S3Error) as exc:
            raise Unavailable(f"object store {self.endpoint}: writing {key!r} failed: {exc}") from None
        return ObjectInfo(key, self.uri(key), reader.size, reader.sha256.hexdigest())

    def put_file(self, key: str, path: pathlib.Path) -> ObjectInfo:
        return self.put_chunks(key, _file_chunks(path))

    def begin_staged(self, key: str) -> StagedUpload:
        return _S3StagedUpload(self, key)

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            response = self.client.get_object(self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject"}:
                raise NotFound(f"object {key!r} not found in s3://{self.bucket}") from None
            raise Unavailable(f"object store {self.endpoint}: reading {key!r} failed: {exc.code}") from None
        return _response_chunks(response, chunk_size)

    def download(self, key: str, path: pathlib.Path) -> None:
        with path.open("wb") as out:
            for chunk in self.iter_chunks(key):
                out.write(chunk)

    @contextlib.contextmanager
    def open_local(self, key: str, scratch: pathlib.Path) -> Iterator[pathlib.Path]:
        # Into the caller's scratch directory, not the system's temporary one (often a
        # small tmpfs), and under the caller's sweep if the process dies.
        fd, name = tempfile.mkstemp(prefix=".download-", suffix=pathlib.PurePosixPath(key).suffix, dir=scratch)
        os.close(fd)
        path = pathlib.Path(name)
        try:
            self.download(key, path)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                return False
            raise Unavailable(f"object store {self.endpoint}: {exc.code}") from None
        return True

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            self.delete(key)

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        names = (obj.object_name for obj in self.client.list_objects(self.bucket, prefix=full, recursive=True))
        return sorted(name[strip:] for name in names if name)


class _S3StagedUpload(_StagedParts):
    """A multipart upload: each part is sent by :meth:`put_part`, the object appears at :meth:`commit`.

    The upload is created with its first part. Until it completes S3 shows nothing at
    the key; one abandoned by a crash stays an incomplete multipart upload (a bucket
    lifecycle rule ``AbortIncompleteMultipartUpload`` reclaims its parts).
    """

    def __init__(self, store: S3ObjectStore, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._name = store._key(key)
        self._upload_id = ""
        self._parts: list[Part] = []

    def _failed(self, exc: Exception) -> Unavailable:
        return Unavailable(f"object store {self._store.endpoint}: writing {self.key!r} failed: {exc}")

    def put_part(self, data: bytes) -> None:
        if not data:
            return
        self.check(data)
        client, bucket = self._store.client, self._store.bucket
        try:
            if not self._upload_id:
                self._upload_id = client._create_multipart_upload(bucket, self._name, {})
            number = len(self._parts) + 1
            etag = client._upload_part(bucket, self._name, data, None, self._upload_id, number)
        except (urllib3.exceptions.HTTPError, S3Error) as exc:
            raise self._failed(exc) from None
        self._parts.append(Part(number, etag))
        self.count(data)

    def commit(self) -> ObjectInfo:
        self.check_open()
        client, bucket = self._store.client, self._store.bucket
        try:
            if self._parts:
                client._complete_multipart_upload(bucket, self._name, self._upload_id, self._parts)
            else:
                client.put_object(bucket, self._name, io.BytesIO(b""), 0)
        except (urllib3.exceptions.HTTPError, S3Error) as exc:
            raise self._failed(exc) from None
        self.finished = "committed"
        return ObjectInfo(self.key, self._store.uri(self.key), self.size, self.sha256.hexdigest())

    def abort(self) -> None:
        if self.finished:
            return
        self.finished = "aborted"
        if self._upload_id:
            try:
                self._store.client._abort_multipart_upload(self._store.bucket, self._name, self._upload_id)
            except (urllib3.exceptions.HTTPError, S3Error) as exc:
                raise self._failed(exc) from None


def _response_chunks(response: urllib3.BaseHTTPResponse, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from response.stream(chunk_size)
    finally:
        response.close()
        response.release_conn()


def open_object_store(settings: Settings) -> ObjectStore:
    """The backend ``FERRY_OBJECT_STORE_URL`` names (not yet checked: call ``check``)."""
    parsed = urlparse(settings.object_store_url)
    if parsed.scheme == "file":
        return LocalObjectStore(pathlib.Path(unquote(parsed.path)))
    return S3ObjectStore(settings.s3, parsed.netloc, parsed.path)
