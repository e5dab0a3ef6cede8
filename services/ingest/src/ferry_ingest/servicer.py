"""gRPC servicer of ``ferry.ingest.v1.IngestService``: parse, validate, delegate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2

from ferry.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from ferry_common import fields
from ferry_common.errors import InvalidArgument
from ferry_common.names import page_size, parse_label_filter, parse_name, parse_version_name, shorten, validate_id
from ferry_common.pagination import Pages, canonical
from ferry_common.streams import header_then_chunks
from ferry_ingest.domain import DataFormat, DatasetVersion
from ferry_ingest.messages import (
    data_format,
    dataset_to_proto,
    profile_to_proto,
    recipe_from_proto,
    version_to_proto,
)
from ferry_ingest.service import ImportProgress, IngestService, NewVersion, SqlSource, UploadHeader

__all__ = ["IngestServicer"]

_VERSION_PATTERN = "datasets/{dataset}/versions/{version}"
# Version numbers are 32-bit INTEGER columns in ingest's database.
MAX_VERSION = 2**31 - 1


def _version_ref(field: str, name: str, *, latest: bool = True) -> tuple[str, int | None]:
    """``(dataset, version)`` of ``datasets/x/versions/3`` (``latest`` gives None)."""
    return parse_version_name(field, name, "datasets", latest=latest, maximum=MAX_VERSION)


def _new_version(field_prefix: str, request: Any) -> dict[str, Any]:
    return {
        "dataset_id": validate_id(f"{field_prefix}dataset_id", request.dataset_id),
        "description": fields.text(f"{field_prefix}description", request.description),
        "labels": fields.labels(f"{field_prefix}labels", request.labels),
        "request_id": fields.request_id(f"{field_prefix}request_id", request.request_id),
    }


def _sql_source(message: ingest_pb2.SqlSource) -> SqlSource:
    """One of ``connection`` (an operator's named connection) or ``url``, and the query."""
    if message.connection and message.url:
        raise InvalidArgument("sql.url: set sql.connection or sql.url, not both", field="sql.url")
    if not message.connection and not message.url:
        raise InvalidArgument(
            "sql.connection: name the database connection to read (one the operator configured)",
            field="sql.connection",
        )
    return SqlSource(query=message.query, connection=message.connection, url=message.url)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Maps requests to :class:`IngestService` calls and results to messages."""

    def __init__(self, service: IngestService) -> None:
        self._service = service

    async def UploadDataset(
        self, request_iterator: AsyncIterator[ingest_pb2.UploadDatasetRequest], context: Any
    ) -> ingest_pb2.DatasetVersion:
        header, chunks = await header_then_chunks(request_iterator)
        delimiter = header.csv.delimiter or ","
        if len(delimiter) != 1 or not delimiter.isascii() or delimiter in '"\r\n':
            raise InvalidArgument(
                f"header.csv.delimiter: {shorten(delimiter)} is not one ASCII character "
                "(other than a quote or a line break)",
                field="header.csv.delimiter",
            )
        fmt = data_format(header.format, "header.format")
        assert fmt is not None
        upload = UploadHeader(**_new_version("header.", header), format=fmt, delimiter=delimiter)

        return version_to_proto(await self._service.upload(upload, chunks))

    async def ImportDataset(
        self, request: ingest_pb2.ImportDatasetRequest, context: Any
    ) -> AsyncIterator[ingest_pb2.ImportDatasetResponse]:
        new = NewVersion(**_new_version("", request))
        source = request.WhichOneof("source")
        events: AsyncIterator[ImportProgress | DatasetVersion]
        if source == "sql":
            events = self._service.import_sql(new, _sql_source(request.sql))
        elif source == "object":
            if not request.object.uri:
                raise InvalidArgument("object.uri: a URI is required", field="object.uri")
            fmt = data_format(request.object.format, "object.format", required=False)
            events = self._service.import_object(new, request.object.uri, fmt)
        else:
            raise InvalidArgument("source: set sql or object", field="source")
        async for event in events:
            if isinstance(event, ImportProgress):
                yield ingest_pb2.ImportDatasetResponse(
                    progress=ingest_pb2.ImportProgress(rows=event.rows, bytes=event.bytes)
                )
            else:
                yield ingest_pb2.ImportDatasetResponse(dataset_version=version_to_proto(event))

    async def TransformDataset(
        self, request: ingest_pb2.TransformDatasetRequest, context: Any
    ) -> ingest_pb2.DatasetVersion:
        source_id, source_version = _version_ref("source", request.source)
        new = NewVersion(**_new_version("", request))
        recipe = recipe_from_proto(request.recipe)
        return version_to_proto(await self._service.transform(new, source_id, source_version, recipe))

    async def GetDataset(self, request: ingest_pb2.GetDatasetRequest, context: Any) -> ingest_pb2.Dataset:
        dataset_id = parse_name("name", request.name, "datasets/{dataset}")["dataset"]
        return dataset_to_proto(await self._service.get_dataset(dataset_id))

    async def ListDatasets(
        self, request: ingest_pb2.ListDatasetsRequest, context: Any
    ) -> ingest_pb2.ListDatasetsResponse:
        size = page_size(request.page_size)
        labels = parse_label_filter(request.filter)
        pages = Pages(request.page_token, {"filter": canonical(labels), "page_size": size})
        datasets, _ = await self._service.list_datasets(size + 1, pages.position_str("after"), labels)
        kept, token = pages.next(datasets, size, lambda last: {"after": last.dataset_id})
        return ingest_pb2.ListDatasetsResponse(datasets=[dataset_to_proto(d) for d in kept], next_page_token=token)

    async def GetDatasetVersion(
        self, request: ingest_pb2.GetDatasetVersionRequest, context: Any
    ) -> ingest_pb2.DatasetVersion:
        dataset_id, version = _version_ref("name", request.name)
        return version_to_proto(await self._service.get_version(dataset_id, version))

    async def ListDatasetVersions(
        self, request: ingest_pb2.ListDatasetVersionsRequest, context: Any
    ) -> ingest_pb2.ListDatasetVersionsResponse:
        dataset_id = parse_name("parent", request.parent, "datasets/{dataset}")["dataset"]
        size = page_size(request.page_size)
        pages = Pages(request.page_token, {"dataset": dataset_id, "page_size": size})
        versions, _ = await self._service.list_versions(dataset_id, size + 1, pages.position_int("before"))
        kept, token = pages.next(versions, size, lambda last: {"before": last.version})
        return ingest_pb2.ListDatasetVersionsResponse(
            dataset_versions=[version_to_proto(v) for v in kept], next_page_token=token
        )

    async def ReadDataset(
        self, request: ingest_pb2.ReadDatasetRequest, context: Any
    ) -> AsyncIterator[ingest_pb2.ReadDatasetResponse]:
        dataset_id, version = _version_ref("name", request.name)
        fmt = data_format(request.format, "format", required=False) or DataFormat.PARQUET
        if fmt is DataFormat.JSONL:
            raise InvalidArgument("format: ReadDataset streams DATA_FORMAT_PARQUET or DATA_FORMAT_CSV", field="format")
        columns = list(request.columns)
        for index, column in enumerate(columns):
            fields.name(f"columns[{index}]", column)
        if len(set(columns)) != len(columns):
            raise InvalidArgument("columns: a column is listed twice", field="columns")
        split = validate_id("split", request.split) if request.split else ""
        async for chunk in self._service.read(dataset_id, version, columns, split, fmt):
            yield ingest_pb2.ReadDatasetResponse(chunk=chunk)

    async def GetProfile(self, request: ingest_pb2.GetProfileRequest, context: Any) -> ingest_pb2.Profile:
        dataset_id, version = _version_ref("name", request.name)
        split = validate_id("split", request.split) if request.split else ""
        found, profile = await self._service.get_profile(dataset_id, version, split)
        return profile_to_proto(found.name, split, profile)

    async def DeleteDatasetVersion(
        self, request: ingest_pb2.DeleteDatasetVersionRequest, context: Any
    ) -> empty_pb2.Empty:
        dataset_id, version = _version_ref("name", request.name, latest=False)
        assert version is not None
        await self._service.delete_version(dataset_id, version)
        return empty_pb2.Empty()
