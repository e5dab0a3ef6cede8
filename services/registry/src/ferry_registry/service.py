"""The registry's use cases. Imports no grpc: testable with plain Python.

Requests arrive here already validated in form by the servicer (ids, versions,
hashes); this layer applies the rules that need state, runs the blocking store off
the event loop, keeps the ResolveAlias cache honest and feeds the watch bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

from ferry_common.errors import FailedPrecondition, FerryError, InvalidArgument, Unavailable
from ferry_common.logs import get_logger
from ferry_common.pagination import Pages, canonical
from ferry_registry.artifacts import ArtifactStore, artifact_key
from ferry_registry.cache import ResolveCache
from ferry_registry.domain import Alias, AliasChange, AliasEvent, Artifact, Model, ModelVersion, NewModelVersion, Page
from ferry_registry.resources import alias_name, version_name
from ferry_registry.store.base import RegistryStore
from ferry_registry.store.database import DatabaseRunner
from ferry_registry.watch import RevisionBus

__all__ = ["RegistryService"]

_log = get_logger("ferry.registry")
WATCH_BATCH = 500
MAX_BATCH_ALIASES = 100

P = ParamSpec("P")
R = TypeVar("R")


class RegistryService:
    """Models, versions, aliases, their audit log and the watch stream.

    Args:
        store: the database adapter.
        runner: runs store calls in threads.
        artifacts: the object store holding uploaded artifacts.
        resolve_cache: serve ResolveAlias from memory between local writes (only when
            this process is the database's only writer).
        watch_poll_seconds: how often to look for events of other registry processes.
    """

    def __init__(
        self,
        store: RegistryStore,
        runner: DatabaseRunner,
        artifacts: ArtifactStore,
        *,
        resolve_cache: bool = False,
        watch_poll_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._runner = runner
        self._artifacts = artifacts
        self._cache = ResolveCache(resolve_cache)
        self._bus = RevisionBus()
        self._poll_seconds = watch_poll_seconds
        self._poller: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Learn the current revision and start polling for other processes' events."""
        self._bus.advance(await self._runner.read(self._store.current_revision))
        self._poller = asyncio.create_task(self._poll(), name="ferry-registry-watch-poll")

    def drain(self) -> None:
        """End every watch stream (UNAVAILABLE: the client resumes elsewhere or later)."""
        self._bus.close()

    async def stop(self) -> None:
        """End every watch stream and stop polling."""
        self.drain()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                revision = await self._runner.read(self._store.current_revision)
            except FerryError as error:
                _log.warning("watch poll failed", error=error.message)
                continue
            if self._bus.advance(revision):
                # Moved by another process: whatever this one cached may be stale.
                self._cache.invalidate()

    async def _read(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._runner.read(fn, *args, **kwargs)

    async def _write(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        self._cache.begin_write()
        try:
            return await self._runner.write(fn, *args, **kwargs)
        finally:
            self._cache.end_write()

    # ---------------------------------------------------------------- models

    async def create_model(self, model_id: str, description: str, labels: Mapping[str, str]) -> Model:
        return await self._write(self._store.create_model, model_id, description, labels)

    async def get_model(self, model_id: str) -> Model:
        return await self._read(self._store.get_model, model_id)

    async def list_models(self, labels: Mapping[str, str], page_size: int, page_token: str) -> Page[Model]:
        pages = Pages(page_token, {"filter": canonical(labels), "page_size": page_size})
        items = await self._read(self._store.list_models, labels, pages.position_str("after"), page_size + 1)
        return Page(*pages.next(items, page_size, lambda last: {"after": last.model_id}))

    async def update_model(self, model_id: str, description: str | None, labels: Mapping[str, str] | None) -> Model:
        return await self._write(self._store.update_model, model_id, description, labels)

    async def delete_model(self, model_id: str, force: bool) -> None:
        keys = await self._write(self._store.delete_model, model_id, force)
        for key in keys:
            await self._artifacts.delete(key)

    # -------------------------------------------------------------- versions

    async def create_version(self, model_id: str, new: NewModelVersion, request_id: str) -> ModelVersion:
        self._artifacts.check_registered_uri("model_version.artifact.uri", new.artifact.uri)
        version, _ = await self._write(self._store.create_version, model_id, new, request_id or None)
        return version

    async def upload_version(
        self, model_id: str, new: NewModelVersion, request_id: str, chunks: AsyncIterator[bytes]
    ) -> ModelVersion:
        """Store the streamed bytes under the version's key, then register the version.

        The number is reserved first so the key can name it; if anything fails (a hash
        mismatch, a broken stream) the object is deleted and the number given back, so
        nothing stays behind. ``new.artifact.sha256`` / ``size_bytes``, when set, are
        checked against the received bytes.
        """
        if request_id:
            existing = await self._read(self._store.find_version_by_request, model_id, request_id)
            if existing is not None:
                async for _ in chunks:  # a retry: the bytes are already stored
                    pass
                return existing
        number = await self._write(self._store.reserve_version, model_id)
        key = artifact_key(model_id, number, new.artifact.format)
        try:
            info = await self._artifacts.put(key, chunks)
            _check_received(new.artifact, info.size_bytes, info.sha256)
        except BaseException:
            # The key is ours alone (its number was reserved above), so deleting it is safe
            # whether or not the bytes were fully written.
            await self._discard_upload(model_id, number, key)
            raise
        artifact = dataclasses.replace(new.artifact, uri=info.uri, sha256=info.sha256, size_bytes=info.size_bytes)
        registration = asyncio.ensure_future(
            self._write(
                self._store.create_version,
                model_id,
                dataclasses.replace(new, artifact=artifact),
                request_id or None,
                reserved=number,
                artifact_key=key,
            )
        )
        try:
            version, created = await asyncio.shield(registration)
        except asyncio.CancelledError:
            # The caller went away while the version was being committed: learn whether
            # the commit happened before cleaning up, never delete a registered artifact.
            try:
                _, created = await registration
            except Exception:
                created = False
            if not created:
                await self._discard_upload(model_id, number, key)
            raise
        except BaseException:
            await self._discard_upload(model_id, number, key)
            raise
        if not created:  # a concurrent retry with the same request_id won
            await self._discard_upload(model_id, number, key)
        return version

    async def _discard_upload(self, model_id: str, number: int, key: str) -> None:
        await self._artifacts.delete(key)
        try:
            await self._write(self._store.release_version, model_id, number)
        except FerryError as error:
            _log.warning("reserved version not released", model=model_id, version=number, error=error.message)

    async def download_version(
        self, model_id: str, version: int | None
    ) -> tuple[ModelVersion, AsyncGenerator[bytes, None]]:
        """The version and a stream of its artifact bytes."""
        found = await self._read(self._store.get_version, model_id, version)
        key = found.artifact_key or self._artifacts.key_for_uri(found.artifact.uri)
        if key is None:
            raise FailedPrecondition(
                f"model version {version_name(model_id, found.version)!r}: artifact {found.artifact.uri!r} is not "
                "in the registry's object store; read it from its URI",
                field="name",
            )
        return found, await self._artifacts.read(key)

    async def get_version(self, model_id: str, version: int | None) -> ModelVersion:
        return await self._read(self._store.get_version, model_id, version)

    async def list_versions(
        self, model_id: str, labels: Mapping[str, str], page_size: int, page_token: str
    ) -> Page[ModelVersion]:
        pages = Pages(page_token, {"model": model_id, "filter": canonical(labels), "page_size": page_size})
        before = pages.position_int("before")
        items = await self._read(self._store.list_versions, model_id, labels, before, page_size + 1)
        return Page(*pages.next(items, page_size, lambda last: {"before": last.version}))

    async def update_version(
        self,
        model_id: str,
        version: int,
        description: str | None,
        labels: Mapping[str, str] | None,
        metrics: Mapping[str, float] | None,
    ) -> ModelVersion:
        return await self._write(self._store.update_version, model_id, version, description, labels, metrics)

    async def delete_version(self, model_id: str, version: int) -> None:
        key = await self._write(self._store.delete_version, model_id, version)
        if key:
            await self._artifacts.delete(key)

    # --------------------------------------------------------------- aliases

    async def set_alias(self, change: AliasChange, actor: str) -> Alias:
        """Point an alias at a version, recording an event.

        With ``change.expected_version`` set, the rule of :func:`~ferry_registry.domain.compare_and_set`
        applies: the store reads the alias under the model's lock and checks it in the
        same transaction that writes, so two racing writers cannot both win.
        """
        (alias,) = await self._set_aliases([change], actor, batch=False)
        return alias

    async def batch_set_aliases(self, changes: Sequence[AliasChange], actor: str) -> list[Alias]:
        """Several aliases, several models, one transaction: all or nothing."""
        if not changes:
            raise InvalidArgument("requests: at least one SetAliasRequest is needed", field="requests")
        if len(changes) > MAX_BATCH_ALIASES:
            raise InvalidArgument(
                f"requests: {len(changes)} changes, at most {MAX_BATCH_ALIASES} per batch", field="requests"
            )
        seen: dict[tuple[str, str], int] = {}
        for index, change in enumerate(changes):
            first = seen.setdefault((change.model_id, change.alias_id), index)
            if first != index:
                raise InvalidArgument(
                    f"requests[{index}]: alias {alias_name(change.model_id, change.alias_id)!r} "
                    f"is already changed by requests[{first}]",
                    field=f"requests[{index}].name",
                )
        return await self._set_aliases(changes, actor, batch=True)

    async def _set_aliases(self, changes: Sequence[AliasChange], actor: str, *, batch: bool) -> list[Alias]:
        aliases = await self._write(self._store.set_aliases, changes, actor, batch=batch)
        self._bus.advance(max(alias.revision for alias in aliases))
        return aliases

    async def get_alias(self, model_id: str, alias_id: str) -> Alias:
        return await self._read(self._store.get_alias, model_id, alias_id)

    async def resolve_alias(self, model_id: str, alias_id: str) -> ModelVersion:
        cached = self._cache.get(model_id, alias_id)
        if cached is not None:
            return cached
        ticket = self._cache.ticket()
        version = await self._read(self._store.resolve_alias, model_id, alias_id)
        self._cache.put(ticket, model_id, alias_id, version)
        return version

    async def list_aliases(self, model_id: str, page_size: int, page_token: str) -> Page[Alias]:
        pages = Pages(page_token, {"model": model_id, "page_size": page_size})
        after = pages.position_str("after")
        items = await self._read(self._store.list_aliases, model_id, after, page_size + 1)
        return Page(*pages.next(items, page_size, lambda last: {"after": last.alias_id}))

    async def delete_alias(
        self, model_id: str, alias_id: str, expected_version: int | None, reason: str, actor: str
    ) -> None:
        event = await self._write(self._store.delete_alias, model_id, alias_id, expected_version, reason, actor)
        self._bus.advance(event.revision)

    async def rollback_alias(self, model_id: str, alias_id: str, reason: str, actor: str) -> Alias:
        alias = await self._write(self._store.rollback_alias, model_id, alias_id, reason, actor)
        self._bus.advance(alias.revision)
        return alias

    async def list_alias_events(
        self, model_id: str, alias_id: str | None, page_size: int, page_token: str
    ) -> Page[AliasEvent]:
        pages = Pages(page_token, {"model": model_id, "alias": alias_id or "", "page_size": page_size})
        after = pages.position_int("after") or 0
        await self._read(self._store.get_model, model_id)
        items = await self._read(self._store.list_events, model_id, alias_id, after, page_size + 1)
        return Page(*pages.next(items, page_size, lambda last: {"after": last.revision}))

    async def watch_aliases(self, model_id: str | None, since_revision: int) -> AsyncGenerator[AliasEvent, None]:
        """Events after ``since_revision`` in revision order, then new ones as they commit.

        Resuming with the revision of the last event received gives every later event
        exactly once: revisions are gap-free and commit in order, so "after R" is a
        well-defined suffix of the log. Ends with Unavailable when the server drains.
        """
        if model_id is not None:
            await self._read(self._store.get_model, model_id)
        newest = await self._read(self._store.current_revision)
        if since_revision > newest:
            raise FailedPrecondition(
                f"since_revision: {since_revision} is ahead of the newest revision {newest}", field="since_revision"
            )
        self._bus.advance(newest)
        return self._follow(model_id, since_revision)

    async def _follow(self, model_id: str | None, cursor: int) -> AsyncGenerator[AliasEvent, None]:
        while True:
            if self._bus.closed:
                raise Unavailable(
                    f"the registry is shutting down: resume the watch with since_revision={cursor}",
                    field="since_revision",
                )
            # Every revision up to `seen` is committed, so the read below returns all of
            # them that match; other models' revisions need not be read again.
            seen = self._bus.revision
            events = await self._read(self._store.list_events, model_id, None, cursor, WATCH_BATCH)
            for event in events:
                yield event
                cursor = event.revision
            if len(events) == WATCH_BATCH:
                continue
            cursor = max(cursor, seen)
            await self._bus.wait_beyond(cursor)


# ----------------------------------------------------------------------- helpers


def _check_received(declared: Artifact, size_bytes: int, sha256: str) -> None:
    if size_bytes == 0:
        raise InvalidArgument("chunk: no artifact bytes were received after the header", field="chunk")
    if declared.sha256 and declared.sha256 != sha256:
        raise InvalidArgument(
            f"header.model_version.artifact.sha256: {declared.sha256!r} does not match the received bytes "
            f"(sha256 {sha256!r}, {size_bytes} bytes)",
            field="header.model_version.artifact.sha256",
        )
    if declared.size_bytes and declared.size_bytes != size_bytes:
        raise InvalidArgument(
            f"header.model_version.artifact.size_bytes: {declared.size_bytes} does not match the "
            f"{size_bytes} bytes received",
            field="header.model_version.artifact.size_bytes",
        )
