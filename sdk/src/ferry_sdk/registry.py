"""The blocking client of ``ferry.registry.v1.RegistryService``."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, overload

import grpc

from ferry.registry.v1 import registry_pb2 as pb
from ferry.registry.v1 import registry_pb2_grpc
from ferry_sdk._base import SyncClient
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
from ferry_sdk._watch import Backoff, ResumableWatch, WatchCursor

__all__ = ["AliasWatch", "RegistryClient"]

SERVICE = "ferry.registry.v1.RegistryService"


class RegistryClient(SyncClient):
    """Models, model versions and aliases, blocking.

    Args:
        address: ``host:port``; default ``FERRY_REGISTRY_ADDRESS`` (through ``ferry_common.settings``).
        settings: the caller's settings (token, TLS, default deadline); read from the
            ``FERRY_*`` environment when omitted.
        timeout: default deadline of unary calls, seconds (default ``FERRY_CALL_TIMEOUT_SECONDS``).
        transfer_timeout: default deadline of uploads and downloads, seconds.
        tracer_provider: record client spans and propagate the trace context.

    Every method raises a :class:`ferry_sdk.errors.FerryError` subclass on failure.
    Names are resource names (``models/churn/versions/3``, ``models/churn/aliases/production``);
    where a model is expected, ``churn`` and ``models/churn`` both work.

        with RegistryClient() as registry:
            registry.create_model("churn", description="who leaves")
            version = registry.upload_model_version("churn", "model.onnx", metrics={"auc": 0.91})
            registry.set_alias("models/churn/aliases/production", version.version, expected_version=0)
    """

    _service = "registry"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.Channel) -> None:
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)

    # Models

    def create_model(
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
        model: pb.Model = self._call(self._stub.CreateModel, request, timeout)
        return model

    def get_model(self, name: str, *, timeout: float | None = None) -> pb.Model:
        """Get a model (``churn`` or ``models/churn``)."""
        model: pb.Model = self._call(self._stub.GetModel, pb.GetModelRequest(name=model_name(name)), timeout)
        return model

    def list_models(self, *, filter: str = "", page_size: int = 0, timeout: float | None = None) -> Iterator[pb.Model]:
        """Every model (``filter``: ``labels.team=risk AND ...``), fetched page by page as iterated."""
        request = pb.ListModelsRequest(filter=filter, page_size=page_size)
        return self._pages(self._stub.ListModels, request, lambda r: r.models, timeout)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> pb.Model:
        """Replace the description and/or labels (only the arguments given)."""
        model: pb.Model = self._call(self._stub.UpdateModel, update_model_request(name, description, labels), timeout)
        return model

    def delete_model(self, name: str, *, force: bool = False, timeout: float | None = None) -> None:
        """Delete a model; ``force`` deletes its versions too (refused while aliases exist)."""
        self._call(self._stub.DeleteModel, pb.DeleteModelRequest(name=model_name(name), force=force), timeout)

    # Versions

    def create_model_version(
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
        """Register a version whose artifact is already in the object store (``request_id``: idempotent)."""
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
        version: pb.ModelVersion = self._call(self._stub.CreateModelVersion, request, timeout)
        return version

    def upload_model_version(
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
        """Register a version and upload its artifact in 1 MiB chunks.

        Args:
            model: ``churn`` or ``models/churn``.
            artifact: a path, bytes or a binary file object.
            format: ``onnx`` / ``torchscript``; default from the file extension, else ONNX.
            progress: called as ``progress(bytes_sent, total_or_None)`` after each chunk
                (from gRPC's sending thread).
            request_id: idempotency key: the same key returns the same version.
            chunk_size: bytes per stream message (default 1 MiB).

        The sha256 of a seekable input is sent in the header, and the registry checks
        the received bytes against it.
        """
        with open_source(artifact) as source:
            header = pb.UploadModelVersionHeader(
                parent=model_name(model),
                request_id=request_id,
                model_version=version_message(
                    description=description,
                    artifact=pb.Artifact(format=artifact_format(format, source), sha256=sha256_of(source) or ""),
                    signature=signature,
                    metrics=metrics,
                    params=params,
                    lineage=lineage,
                    labels=labels,
                ),
            )
            version: pb.ModelVersion = self._upload(
                self._stub.UploadModelVersion,
                pb.UploadModelVersionRequest(header=header),
                lambda chunk: pb.UploadModelVersionRequest(chunk=chunk),
                Chunks(source, progress, chunk_size),
                self._transfer(timeout),
            )
            return version

    @overload
    def download_model_version(
        self, name: str, path: None = None, *, progress: Progress | None = None, timeout: float | None = None
    ) -> bytes: ...

    @overload
    def download_model_version(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> pathlib.Path: ...

    def download_model_version(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> bytes | pathlib.Path:
        """A version's artifact: returned as bytes, or written to ``path`` (atomically) and the path returned.

        The bytes are checked against the version's sha256 (``FerryError`` with
        ``DATA_LOSS`` on a mismatch).
        """
        sink = Sink(path, progress)
        expected = ""
        try:
            request = pb.DownloadModelVersionRequest(name=name)
            for message in self._stream(self._stub.DownloadModelVersion, request, self._transfer(timeout)):
                if message.HasField("model_version"):
                    expected = message.model_version.artifact.sha256
                    sink.total = message.model_version.artifact.size_bytes or None
                if message.chunk:
                    sink.write(message.chunk)
        except BaseException:
            sink.abort()
            raise
        return sink.finish(expected)

    def get_model_version(self, name: str, *, timeout: float | None = None) -> pb.ModelVersion:
        """Get a version: ``models/churn/versions/3`` or ``models/churn/versions/latest``."""
        version: pb.ModelVersion = self._call(self._stub.GetModelVersion, pb.GetModelVersionRequest(name=name), timeout)
        return version

    def list_model_versions(
        self, model: str, *, filter: str = "", page_size: int = 0, timeout: float | None = None
    ) -> Iterator[pb.ModelVersion]:
        """Every version of a model, newest first, fetched page by page as iterated."""
        request = pb.ListModelVersionsRequest(parent=model_name(model), filter=filter, page_size=page_size)
        return self._pages(self._stub.ListModelVersions, request, lambda r: r.model_versions, timeout)

    def update_model_version(
        self,
        name: str,
        *,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        timeout: float | None = None,
    ) -> pb.ModelVersion:
        """Replace the description, labels and/or metrics (only the arguments given)."""
        request = update_version_request(name, description, labels, metrics)
        version: pb.ModelVersion = self._call(self._stub.UpdateModelVersion, request, timeout)
        return version

    def delete_model_version(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a version. Raises ``FailedPrecondition`` while an alias points at it."""
        self._call(self._stub.DeleteModelVersion, pb.DeleteModelVersionRequest(name=name), timeout)

    # Aliases

    def set_alias(
        self,
        name: str,
        version: int,
        expected_version: int | None = None,
        reason: str = "",
        *,
        timeout: float | None = None,
    ) -> pb.Alias:
        """Point ``models/m/aliases/a`` at ``version``.

        Args:
            expected_version: compare-and-set: ``None`` = unconditional, ``0`` = the
                alias must not exist yet, ``N`` = it must point at N (else ``Aborted``).
            reason: kept in the audit log.
        """
        request = set_alias_request(name, version, expected_version, reason)
        alias: pb.Alias = self._call(self._stub.SetAlias, request, timeout)
        return alias

    def get_alias(self, name: str, *, timeout: float | None = None) -> pb.Alias:
        alias: pb.Alias = self._call(self._stub.GetAlias, pb.GetAliasRequest(name=name), timeout)
        return alias

    def resolve_alias(self, name: str, *, timeout: float | None = None) -> pb.ModelVersion:
        """The version an alias points at."""
        version: pb.ModelVersion = self._call(self._stub.ResolveAlias, pb.ResolveAliasRequest(name=name), timeout)
        return version

    def list_aliases(self, model: str, *, page_size: int = 0, timeout: float | None = None) -> Iterator[pb.Alias]:
        """Every alias of a model, by id, fetched page by page as iterated."""
        request = pb.ListAliasesRequest(parent=model_name(model), page_size=page_size)
        return self._pages(self._stub.ListAliases, request, lambda r: r.aliases, timeout)

    def delete_alias(
        self, name: str, *, expected_version: int | None = None, reason: str = "", timeout: float | None = None
    ) -> None:
        """Delete an alias (compare-and-set when ``expected_version`` is given)."""
        request = pb.DeleteAliasRequest(name=name, reason=reason)
        if expected_version is not None:
            request.expected_version = expected_version
        self._call(self._stub.DeleteAlias, request, timeout)

    def rollback_alias(self, name: str, *, reason: str = "", timeout: float | None = None) -> pb.Alias:
        """Move an alias back to its previous target. ``FailedPrecondition`` when it has none."""
        alias: pb.Alias = self._call(
            self._stub.RollbackAlias, pb.RollbackAliasRequest(name=name, reason=reason), timeout
        )
        return alias

    def list_alias_events(
        self, model: str, *, alias_id: str = "", page_size: int = 0, timeout: float | None = None
    ) -> Iterator[pb.AliasEvent]:
        """The alias audit log of a model, oldest first, fetched page by page as iterated."""
        request = pb.ListAliasEventsRequest(parent=model_name(model), alias_id=alias_id, page_size=page_size)
        return self._pages(self._stub.ListAliasEvents, request, lambda r: r.events, timeout)

    def batch_set_aliases(
        self,
        changes: Mapping[str, int] | Iterable[pb.SetAliasRequest],
        *,
        reason: str = "",
        timeout: float | None = None,
    ) -> list[pb.Alias]:
        """Set several aliases (of several models) in one transaction: all or nothing.

        Args:
            changes: ``{alias name: version}``, or ``SetAliasRequest`` messages (for compare-and-set).
            reason: the default reason of each change.
        """
        response = self._call(self._stub.BatchSetAliases, batch_set_request(changes, reason), timeout)
        return list(response.aliases)

    def watch_aliases(self, model: str = "", *, since_revision: int = 0, backoff: Backoff | None = None) -> AliasWatch:
        """Follow alias events (of one model, or all when ``model`` is empty) after ``since_revision``.

        The watch reconnects by itself when the stream breaks with UNAVAILABLE (a
        registry restart), resuming after the last revision it delivered: no event
        is missed or repeated. Iterate it; :meth:`AliasWatch.cancel` (from any
        thread) or leaving a ``with`` block ends it.
        """
        return AliasWatch(self._stub, model_name(model) if model else "", since_revision, Backoff.fresh(backoff))


class AliasWatch(ResumableWatch[pb.AliasEvent]):
    """A resumable ``WatchAliases`` stream (see :meth:`RegistryClient.watch_aliases`).

    Attributes:
        revision: the last revision delivered (where a new watch would resume).
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
