"""Model artifacts in the object store: the key layout and async streaming helpers.

Key layout (relative to ``FERRY_OBJECT_STORE_URL``)::

    models/{model}/versions/{version}/artifact.onnx   (ARTIFACT_FORMAT_ONNX)
    models/{model}/versions/{version}/artifact.pt     (ARTIFACT_FORMAT_TORCHSCRIPT)

The object store interface is synchronous; these helpers run it in threads and bridge
it to the async gRPC streams without buffering more than one chunk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from urllib.parse import unquote, urlsplit

from ferry_common.errors import InvalidArgument, ResourceExhausted
from ferry_common.logs import get_logger
from ferry_common.names import shorten
from ferry_common.objectstore import ObjectInfo, ObjectStore
from ferry_common.streams import iterate_in_thread
from ferry_registry.domain import ArtifactFormat

__all__ = ["MODELS_PREFIX", "ArtifactStore", "artifact_key"]

# The registry's part of a shared object store; other services own other prefixes
# (ingest: ``datasets/``), and a model version must never name their objects.
MODELS_PREFIX = "models/"

_log = get_logger("ferry.registry.artifacts")


def artifact_key(model_id: str, version: int, fmt: ArtifactFormat) -> str:
    """Where the registry stores the artifact of an uploaded version."""
    return f"models/{model_id}/versions/{version}/artifact.{fmt.extension}"


class ArtifactStore:
    """The object store, seen from the event loop."""

    def __init__(self, objects: ObjectStore, max_bytes: int) -> None:
        self._objects = objects
        self._max_bytes = max_bytes
        # uri("x") minus "x": every object of this store has a URI starting with it.
        self._uri_prefix = objects.uri("x")[:-1]

    async def check(self) -> None:
        await asyncio.to_thread(self._objects.check)

    def key_for_uri(self, uri: str) -> str | None:
        """The key of ``uri`` when it names an object of this store, else ``None``."""
        if not uri.startswith(self._uri_prefix):
            return None
        key = uri[len(self._uri_prefix) :]
        return unquote(key) if uri.startswith("file:") else key

    def check_registered_uri(self, field: str, uri: str) -> None:
        """Refuse an artifact URI a version must not be registered with.

        Refused (INVALID_ARGUMENT naming ``field``): a path with ``.`` or ``..`` segments
        or empty segments, after percent-decoding (``file://<objects>/../../etc/passwd``);
        a ``file://`` URI outside this store (the registry can never serve a path of its
        own machine); an object of this store outside ``models/`` (another service's
        prefix, such as ingest's ``datasets/``). ``s3://`` URIs of other buckets stay
        allowed as references to models kept elsewhere: DownloadModelVersion answers
        FAILED_PRECONDITION for them.
        """
        parts = urlsplit(uri)
        path = unquote(parts.path)
        segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
        if any(segment in ("", ".", "..") for segment in segments) or "\\" in path or "\x00" in path:
            raise InvalidArgument(
                f"{field}: {shorten(uri)} has an empty, '.' or '..' path segment (after percent-decoding)",
                field=field,
            )
        key = self.key_for_uri(uri)
        if key is None:
            if parts.scheme == "file":
                raise InvalidArgument(
                    f"{field}: {shorten(uri)} is a file outside the registry's object store "
                    f"({self._uri_prefix}{MODELS_PREFIX}...); upload it with UploadModelVersion",
                    field=field,
                )
            return
        if not key.startswith(MODELS_PREFIX):
            raise InvalidArgument(
                f"{field}: {shorten(uri)} is outside the registry's prefix {MODELS_PREFIX!r} of the object "
                "store (another service's objects)",
                field=field,
            )

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> ObjectInfo:
        """Write ``key`` from an async stream of chunks (ResourceExhausted past the limit).

        The object store pulls chunks from a thread, one at a time, so memory holds one
        chunk whatever the size. If the caller is cancelled (the client went away), the
        pull fails, so the store discards the partial object instead of completing it.
        """
        loop = asyncio.get_running_loop()
        limit = self._max_bytes
        abandoned = threading.Event()
        pending: list[concurrent.futures.Future[bytes | None]] = []

        async def next_chunk() -> bytes | None:
            return await anext(chunks, None)

        def pull() -> Iterator[bytes]:
            received = 0
            while True:
                if abandoned.is_set():
                    raise ConnectionAbortedError(f"upload of {key!r} abandoned by the caller")
                future = asyncio.run_coroutine_threadsafe(next_chunk(), loop)
                pending[:] = [future]
                chunk = future.result()
                if chunk is None:
                    return
                received += len(chunk)
                if received > limit:
                    raise ResourceExhausted(
                        f"chunk: artifact is larger than FERRY_REGISTRY_MAX_ARTIFACT_BYTES ({limit} bytes)",
                        field="chunk",
                    )
                yield chunk

        writer = asyncio.ensure_future(asyncio.to_thread(self._objects.put_chunks, key, pull()))
        try:
            return await asyncio.shield(writer)
        except asyncio.CancelledError:
            abandoned.set()
            for future in pending:
                future.cancel()
            # Let the writer thread finish (or fail) before the caller cleans up, so no
            # object can land after the caller has deleted the key.
            with contextlib.suppress(BaseException):
                await writer
            raise

    async def read(self, key: str) -> AsyncGenerator[bytes, None]:
        """Open ``key`` (NotFound when absent) and return its chunks as an async stream."""
        source = await asyncio.to_thread(self._objects.iter_chunks, key)
        return iterate_in_thread(source)

    async def delete(self, key: str) -> None:
        """Delete an object; failures are logged, not raised (the metadata is already gone)."""
        try:
            await asyncio.to_thread(self._objects.delete, key)
        except Exception as error:  # an orphaned object must not fail the RPC
            _log.warning("artifact not deleted", key=key, error=str(error))
