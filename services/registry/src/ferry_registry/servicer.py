"""``ferry.registry.v1.RegistryService`` over gRPC: parse, validate, map, delegate.

Nothing here decides anything: the rules live in :mod:`ferry_registry.service`.
Domain errors raised below become status codes in the shared error interceptor.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from google.protobuf import empty_pb2

from ferry.registry.v1 import registry_pb2 as pb
from ferry.registry.v1 import registry_pb2_grpc
from ferry_common.auth import current_actor
from ferry_common.errors import InvalidArgument
from ferry_common.names import page_size, validate_id
from ferry_common.streams import header_then_chunks
from ferry_registry import messages as m
from ferry_registry.domain import AliasChange, ModelVersion
from ferry_registry.service import RegistryService

__all__ = ["RegistryServicer"]

_MODEL_FIELDS = ("description", "labels")
_VERSION_FIELDS = ("description", "labels", "metrics")
_MAX_RESOLVED = 10_000


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """The gRPC face of :class:`RegistryService`."""

    def __init__(self, service: RegistryService) -> None:
        self._service = service
        # ResolveAlias is the hot path (serve resolves `production` per deployment):
        # while the service keeps handing back the same cached ModelVersion object,
        # its proto is reused instead of rebuilt. Keyed by alias; checked by identity.
        self._resolved: dict[tuple[str, str], tuple[ModelVersion, pb.ModelVersion]] = {}

    # ---------------------------------------------------------------- models

    async def CreateModel(self, request: pb.CreateModelRequest, context: Any) -> pb.Model:
        model_id = validate_id("model_id", request.model_id)
        description = m.text("model.description", request.model.description)
        labels = m.labels("model.labels", request.model.labels)
        return m.model_to_proto(await self._service.create_model(model_id, description, labels))

    async def GetModel(self, request: pb.GetModelRequest, context: Any) -> pb.Model:
        return m.model_to_proto(await self._service.get_model(m.model_ref("name", request.name)))

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        page = await self._service.list_models(
            m.label_filter(request.filter), page_size(request.page_size), request.page_token
        )
        return pb.ListModelsResponse(
            models=[m.model_to_proto(model) for model in page.items], next_page_token=page.next_page_token
        )

    async def UpdateModel(self, request: pb.UpdateModelRequest, context: Any) -> pb.Model:
        model_id = m.model_ref("model.name", request.model.name)
        fields = m.update_fields(request.update_mask, _MODEL_FIELDS)
        description = m.text("model.description", request.model.description) if "description" in fields else None
        labels = m.labels("model.labels", request.model.labels) if "labels" in fields else None
        return m.model_to_proto(await self._service.update_model(model_id, description, labels))

    async def DeleteModel(self, request: pb.DeleteModelRequest, context: Any) -> empty_pb2.Empty:
        await self._service.delete_model(m.model_ref("name", request.name), request.force)
        return empty_pb2.Empty()

    # -------------------------------------------------------------- versions

    async def CreateModelVersion(self, request: pb.CreateModelVersionRequest, context: Any) -> pb.ModelVersion:
        model_id = m.model_ref("parent", request.parent)
        new = m.new_model_version("model_version", request.model_version)
        request_id = m.request_id("request_id", request.request_id)
        return m.version_to_proto(await self._service.create_version(model_id, new, request_id))

    async def UploadModelVersion(
        self, request_iterator: AsyncIterable[pb.UploadModelVersionRequest], context: Any
    ) -> pb.ModelVersion:
        header, chunks = await header_then_chunks(request_iterator)
        model_id = m.model_ref("header.parent", header.parent)
        new = m.new_model_version("header.model_version", header.model_version, upload=True)
        request_id = m.request_id("header.request_id", header.request_id)
        version = await self._service.upload_version(model_id, new, request_id, chunks)
        return m.version_to_proto(version)

    async def DownloadModelVersion(
        self, request: pb.DownloadModelVersionRequest, context: Any
    ) -> AsyncIterator[pb.DownloadModelVersionResponse]:
        model_id, number = m.version_ref_or_latest("name", request.name)
        version, chunks = await self._service.download_version(model_id, number)
        first: pb.ModelVersion | None = m.version_to_proto(version)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield pb.DownloadModelVersionResponse(model_version=first, chunk=chunk)
                first = None
        if first is not None:
            yield pb.DownloadModelVersionResponse(model_version=first)

    async def GetModelVersion(self, request: pb.GetModelVersionRequest, context: Any) -> pb.ModelVersion:
        model_id, number = m.version_ref_or_latest("name", request.name)
        return m.version_to_proto(await self._service.get_version(model_id, number))

    async def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: Any
    ) -> pb.ListModelVersionsResponse:
        page = await self._service.list_versions(
            m.model_ref("parent", request.parent),
            m.label_filter(request.filter),
            page_size(request.page_size),
            request.page_token,
        )
        return pb.ListModelVersionsResponse(
            model_versions=[m.version_to_proto(version) for version in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateModelVersion(self, request: pb.UpdateModelVersionRequest, context: Any) -> pb.ModelVersion:
        model_id, number = m.version_ref("model_version.name", request.model_version.name)
        fields = m.update_fields(request.update_mask, _VERSION_FIELDS)
        message = request.model_version
        description = m.text("model_version.description", message.description) if "description" in fields else None
        labels = m.labels("model_version.labels", message.labels) if "labels" in fields else None
        metrics = m.metrics("model_version.metrics", message.metrics) if "metrics" in fields else None
        version = await self._service.update_version(model_id, number, description, labels, metrics)
        return m.version_to_proto(version)

    async def DeleteModelVersion(self, request: pb.DeleteModelVersionRequest, context: Any) -> empty_pb2.Empty:
        model_id, number = m.version_ref("name", request.name)
        await self._service.delete_version(model_id, number)
        return empty_pb2.Empty()

    # --------------------------------------------------------------- aliases

    async def SetAlias(self, request: pb.SetAliasRequest, context: Any) -> pb.Alias:
        change = _alias_change("", request, default_reason="")
        return m.alias_to_proto(await self._service.set_alias(change, current_actor()))

    async def BatchSetAliases(self, request: pb.BatchSetAliasesRequest, context: Any) -> pb.BatchSetAliasesResponse:
        default_reason = m.reason("reason", request.reason)
        changes = [
            _alias_change(f"requests[{index}].", item, default_reason=default_reason)
            for index, item in enumerate(request.requests)
        ]
        aliases = await self._service.batch_set_aliases(changes, current_actor())
        return pb.BatchSetAliasesResponse(aliases=[m.alias_to_proto(alias) for alias in aliases])

    async def GetAlias(self, request: pb.GetAliasRequest, context: Any) -> pb.Alias:
        return m.alias_to_proto(await self._service.get_alias(*m.alias_ref("name", request.name)))

    async def ResolveAlias(self, request: pb.ResolveAliasRequest, context: Any) -> pb.ModelVersion:
        key = m.alias_ref("name", request.name)
        version = await self._service.resolve_alias(*key)
        known = self._resolved.get(key)
        if known is not None and known[0] is version:
            return known[1]
        message = m.version_to_proto(version)
        if len(self._resolved) >= _MAX_RESOLVED:
            self._resolved.clear()
        self._resolved[key] = (version, message)
        return message

    async def ListAliases(self, request: pb.ListAliasesRequest, context: Any) -> pb.ListAliasesResponse:
        page = await self._service.list_aliases(
            m.model_ref("parent", request.parent), page_size(request.page_size), request.page_token
        )
        return pb.ListAliasesResponse(
            aliases=[m.alias_to_proto(alias) for alias in page.items], next_page_token=page.next_page_token
        )

    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Any) -> empty_pb2.Empty:
        model_id, alias_id = m.alias_ref("name", request.name)
        expected = (
            m.positive("expected_version", request.expected_version) if request.HasField("expected_version") else None
        )
        reason = m.reason("reason", request.reason)
        await self._service.delete_alias(model_id, alias_id, expected, reason, current_actor())
        return empty_pb2.Empty()

    async def RollbackAlias(self, request: pb.RollbackAliasRequest, context: Any) -> pb.Alias:
        model_id, alias_id = m.alias_ref("name", request.name)
        reason = m.reason("reason", request.reason)
        return m.alias_to_proto(await self._service.rollback_alias(model_id, alias_id, reason, current_actor()))

    async def ListAliasEvents(self, request: pb.ListAliasEventsRequest, context: Any) -> pb.ListAliasEventsResponse:
        page = await self._service.list_alias_events(
            m.model_ref("parent", request.parent),
            m.id_or_empty("alias_id", request.alias_id),
            page_size(request.page_size),
            request.page_token,
        )
        return pb.ListAliasEventsResponse(
            events=[m.alias_event_to_proto(event) for event in page.items], next_page_token=page.next_page_token
        )

    async def WatchAliases(self, request: pb.WatchAliasesRequest, context: Any) -> AsyncIterator[pb.AliasEvent]:
        model_id = m.model_ref("parent", request.parent) if request.parent else None
        if request.since_revision < 0:
            raise InvalidArgument(
                f"since_revision: {request.since_revision} must not be negative", field="since_revision"
            )
        events = await self._service.watch_aliases(model_id, request.since_revision)
        async with contextlib.aclosing(events):
            async for event in events:
                yield m.alias_event_to_proto(event)


def _alias_change(prefix: str, request: pb.SetAliasRequest, *, default_reason: str) -> AliasChange:
    model_id, alias_id = m.alias_ref(f"{prefix}name", request.name)
    expected: int | None = None
    if request.HasField("expected_version"):
        expected = request.expected_version
        if expected < 0:
            raise InvalidArgument(
                f"{prefix}expected_version: {expected} must be 0 (alias must not exist) or a version number",
                field=f"{prefix}expected_version",
            )
    return AliasChange(
        model_id=model_id,
        alias_id=alias_id,
        version=m.positive(f"{prefix}version", request.version),
        expected_version=expected,
        reason=m.reason(f"{prefix}reason", request.reason) or default_reason,
    )
