"""The object-store interface shared by ingest and registry, and its two backends.

``FERRY_OBJECT_STORE_URL`` picks the backend: ``file:///path`` is a local
directory (the embedded default), ``s3://bucket[/prefix]`` any S3 endpoint through
the ``minio`` SDK (MinIO, AWS S3, moto, Swift). The interface is synchronous;
callers on an event loop use ``asyncio.to_thread``.

Writes are atomic: an object is either absent or complete. The local backend
writes a temporary file and renames it; S3 makes an object visible only when its
(multipart) upload completes.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlparse

import urllib3
from minio import Minio
from minio.error import S3Error

from ferry_common.errors import FailedPrecondition, NotFound, Unavailable
from ferry_common.settings import S3Settings, Settings

__all__ = [
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "open_object_store",
]

CHUNK_BYTES = 1024 * 1024
# Multipart part size: memory per upload is one part, whatever the object size.
PART_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What was written."""

    key: str
    uri: str
    size_bytes: int
    sha256: str


class ObjectStore(Protocol):
    """Keys are relative, ``/``-separated: ``datasets/penguins/versions/1/data.parquet``."""

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

    def download(self, key: str, path: pathlib.Path) -> None:
        """Copy an object to a local file."""

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

    def local_path(self, key: str) -> pathlib.Path:
        return self._path(key)

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
        return ObjectInfo(key, path.as_uri(), size, digest.hexdigest())

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


class S3ObjectStore:
    """Objects in an S3 bucket, through the ``minio`` SDK."""

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
