"""The asyncio client of ``ferry.registry.v1.RegistryService``."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, overload

import grpc
import grpc.aio

from ferry.registry.v1 import registry_pb2 as pb
from ferry.registry.v1 import registry_pb2_grpc
from ferry_sdk._registry_messages import (
    ArtifactFormatLike,
    LineageLike,
    SignatureLike,
    artifact_format,
    batch_set_request,
    model_name,
    set_alias_request,
    update_model_request,
    update_version_request,
    version_message,
)
from ferry_sdk._sinks import Sink
from ferry_sdk._sources import CHUNK_BYTES, Chunks, Progress, UploadInput, open_source, sha256_of
from ferry_sdk._watch import Backoff, ResumableAsyncWatch, WatchCursor
from ferry_sdk.aio._base import AsyncClient
from ferry_sdk.registry import SERVICE

__all__ = ["AliasWatch", "RegistryClient"]


class RegistryClient(AsyncClient):
    """Models, model versions and aliases, for asyncio; the methods of :class:`ferry_sdk.RegistryClient`.

    Create it inside a running event loop (``async with RegistryClient() as registry:``).

        async with RegistryClient() as registry:
            version = await registry.get_model_version("models/churn/versions/latest")
            async for event in registry.watch_aliases("churn"):
                ...
    """

    _service = "registry"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)

    # Models

    async def create_model(
        self,
        model_id: str,
        *,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> pb.Model:
        """Create a model. Raises ``AlreadyExists`` when the id is taken."""
        request = pb.CreateModelRequest(
            model_id=model_id, model=pb.Model(description=description, labels=dict(labels or {}))
        )
        model: pb.Model = await self._call(self._stub.CreateModel, request, timeout)
        return model

    async def get_model(self, name: str, *, timeout: float | None = None) -> pb.Model:
        model: pb.Model = await self._call(self._stub.GetModel, pb.GetModelRequest(name=model_name(name)), timeout)
        return model

    def list_models(
        self, *, filter: str = "", page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.Model]:
        """Every model, fetched page by page as iterated (``async for``)."""
        request = pb.ListModelsRequest(filter=filter, page_size=page_size)
        return self._pages(self._stub.ListModels, request, lambda r: r.models, timeout)

    async def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> pb.Model:
        request = update_model_request(name, description, labels)
        model: pb.Model = await self._call(self._stub.UpdateModel, request, timeout)
        return model

    async def delete_model(self, name: str, *, force: bool = False, timeout: float | None = None) -> None:
        await self._call(self._stub.DeleteModel, pb.DeleteModelRequest(name=model_name(name), force=force), timeout)

    # Versions

    async def create_model_version(
        self,
        model: str,
        artifact: pb.Artifact,
        *,
        description: str = "",
        signature: SignatureLike = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        lineage: LineageLike = None,
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> pb.ModelVersion:
        request = pb.CreateModelVersionRequest(
            parent=model_name(model),
            request_id=request_id,
            model_version=version_message(
                description=description,
                artifact=artifact,
                signature=signature,
                metrics=metrics,
                params=params,
                lineage=lineage,
                labels=labels,
            ),
        )
        version: pb.ModelVersion = await self._call(self._stub.CreateModelVersion, request, timeout)
        return version

    async def upload_model_version(
        self,
        model: str,
        artifact: UploadInput,
        *,
        format: ArtifactFormatLike = None,
        description: str = "",
        signature: SignatureLike = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        lineage: LineageLike = None,
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        progress: Progress | None = None,
        chunk_size: int = CHUNK_BYTES,
        timeout: float | None = None,
    ) -> pb.ModelVersion:
        """Register a version and upload its artifact in 1 MiB chunks (files read off the event loop)."""
        source = await asyncio.to_thread(open_source, artifact)
        with source:
            digest = await asyncio.to_thread(sha256_of, source)
            header = pb.UploadModelVersionHeader(
                parent=model_name(model),
                request_id=request_id,
                model_version=version_message(
                    description=description,
                    artifact=pb.Artifact(format=artifact_format(format, source), sha256=digest or ""),
                    signature=signature,
                    metrics=metrics,
                    params=params,
                    lineage=lineage,
                    labels=labels,
                ),
            )
            version: pb.ModelVersion = await self._upload(
                self._stub.UploadModelVersion,
                pb.UploadModelVersionRequest(header=header),
                lambda chunk: pb.UploadModelVersionRequest(chunk=chunk),
                Chunks(source, progress, chunk_size),
                self._transfer(timeout),
            )
            return version

    @overload
    async def download_model_version(
        self, name: str, path: None = None, *, progress: Progress | None = None, timeout: float | None = None
    ) -> bytes: ...

    @overload
    async def download_model_version(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> pathlib.Path: ...

    async def download_model_version(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> bytes | pathlib.Path:
        """A version's artifact as bytes, or written to ``path`` (sha256 checked)."""
        sink = await asyncio.to_thread(Sink, path, progress)
        expected = ""
        try:
            request = pb.DownloadModelVersionRequest(name=name)
            async for message in self._stream(self._stub.DownloadModelVersion, request, self._transfer(timeout)):
                if message.HasField("model_version"):
                    expected = message.model_version.artifact.sha256
                    sink.total = message.model_version.artifact.size_bytes or None
                if message.chunk:
                    await asyncio.to_thread(sink.write, message.chunk)
        except BaseException:
            sink.abort()
            raise
        return await asyncio.to_thread(sink.finish, expected)

    async def get_model_version(self, name: str, *, timeout: float | None = None) -> pb.ModelVersion:
        """Get ``models/m/versions/n`` (or ``.../versions/latest``)."""
        request = pb.GetModelVersionRequest(name=name)
        version: pb.ModelVersion = await self._call(self._stub.GetModelVersion, request, timeout)
        return version

    def list_model_versions(
        self, model: str, *, filter: str = "", page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.ModelVersion]:
        request = pb.ListModelVersionsRequest(parent=model_name(model), filter=filter, page_size=page_size)
        return self._pages(self._stub.ListModelVersions, request, lambda r: r.model_versions, timeout)

    async def update_model_version(
        self,
        name: str,
        *,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        timeout: float | None = None,
    ) -> pb.ModelVersion:
        request = update_version_request(name, description, labels, metrics)
        version: pb.ModelVersion = await self._call(self._stub.UpdateModelVersion, request, timeout)
        return version

    async def delete_model_version(self, name: str, *, timeout: float | None = None) -> None:
        await self._call(self._stub.DeleteModelVersion, pb.DeleteModelVersionRequest(name=name), timeout)

    # Aliases

    async def set_alias(
        self,
        name: str,
        version: int,
        expected_version: int | None = None,
        reason: str = "",
        *,
        timeout: float | None = None,
    ) -> pb.Alias:
        """Point an alias at ``version`` (compare-and-set with ``expected_version``; see the sync client)."""
        request = set_alias_request(name, version, expected_version, reason)
        alias: pb.Alias = await self._call(self._stub.SetAlias, request, timeout)
        return alias

    async def get_alias(self, name: str, *, timeout: float | None = None) -> pb.Alias:
        alias: pb.Alias = await self._call(self._stub.GetAlias, pb.GetAliasRequest(name=name), timeout)
        return alias

    async def resolve_alias(self, name: str, *, timeout: float | None = None) -> pb.ModelVersion:
        request = pb.ResolveAliasRequest(name=name)
        version: pb.ModelVersion = await self._call(self._stub.ResolveAlias, request, timeout)
        return version

    def list_aliases(self, model: str, *, page_size: int = 0, timeout: float | None = None) -> AsyncIterator[pb.Alias]:
        request = pb.ListAliasesRequest(parent=model_name(model), page_size=page_size)
        return self._pages(self._stub.ListAliases, request, lambda r: r.aliases, timeout)

    async def delete_alias(
        self, name: str, *, expected_version: int | None = None, reason: str = "", timeout: float | None = None
    ) -> None:
        request = pb.DeleteAliasRequest(name=name, reason=reason)
        if expected_version is not None:
            request.expected_version = expected_version
        await self._call(self._stub.DeleteAlias, request, timeout)

    async def rollback_alias(self, name: str, *, reason: str = "", timeout: float | None = None) -> pb.Alias:
        request = pb.RollbackAliasRequest(name=name, reason=reason)
        alias: pb.Alias = await self._call(self._stub.RollbackAlias, request, timeout)
        return alias

    def list_alias_events(
        self, model: str, *, alias_id: str = "", page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.AliasEvent]:
        request = pb.ListAliasEventsRequest(parent=model_name(model), alias_id=alias_id, page_size=page_size)
        return self._pages(self._stub.ListAliasEvents, request, lambda r: r.events, timeout)

    async def batch_set_aliases(
        self,
        changes: Mapping[str, int] | Iterable[pb.SetAliasRequest],
        *,
        reason: str = "",
        timeout: float | None = None,
    ) -> list[pb.Alias]:
        response = await self._call(self._stub.BatchSetAliases, batch_set_request(changes, reason), timeout)
        return list(response.aliases)

    def watch_aliases(self, model: str = "", *, since_revision: int = 0, backoff: Backoff | None = None) -> AliasWatch:
        """Follow alias events after ``since_revision``, resuming across reconnects (``async for``)."""
        return AliasWatch(self._stub, model_name(model) if model else "", since_revision, Backoff.fresh(backoff))


class AliasWatch(ResumableAsyncWatch[pb.AliasEvent]):
    """A resumable ``WatchAliases`` stream for asyncio (see :meth:`ferry_sdk.RegistryClient.watch_aliases`).

    Attributes:
        revision: the last revision delivered.
    """

    def __init__(
        self, stub: registry_pb2_grpc.RegistryServiceStub, parent: str, since_revision: int, backoff: Backoff
    ) -> None:
        super().__init__(backoff)
        self._stub = stub
        self._cursor = WatchCursor(parent, since_revision)

    @property
    def revision(self) -> int:
        return self._cursor.revision

    def _start(self) -> Any:
        return self._stub.WatchAliases(self._cursor.request())

    def _accept(self, event: pb.AliasEvent) -> bool:
        return self._cursor.accept(event)
