"""The asyncio client of ``ferry.ingest.v1.IngestService``."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, overload

import grpc.aio

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry.ingest.v1 import ingest_pb2_grpc
from ferry_sdk._ingest_messages import (
    DataFormatLike,
    RecipeLike,
    dataset_name,
    frame_from_parquet,
    import_request,
    open_dataset_source,
    read_request,
    recipe_message,
    upload_header,
)
from ferry_sdk._sinks import Sink
from ferry_sdk._sources import CHUNK_BYTES, Chunks, Progress, UploadInput
from ferry_sdk.aio._base import AsyncClient
from ferry_sdk.ingest import SERVICE

__all__ = ["IngestClient"]


class IngestClient(AsyncClient):
    """Datasets and dataset versions, for asyncio; the methods of :class:`ferry_sdk.IngestClient`.

    Create it inside a running event loop (``async with IngestClient() as ingest:``).
    Files are read and written, and DataFrames serialized, off the event loop.
    """

    _service = "ingest"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)

    async def upload_dataset(
        self,
        dataset_id: str,
        data: UploadInput,
        *,
        format: DataFormatLike = None,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        csv_delimiter: str | None = None,
        progress: Progress | None = None,
        chunk_size: int = CHUNK_BYTES,
        timeout: float | None = None,
    ) -> pb.DatasetVersion:
        """Upload a path, bytes, a binary file object or a DataFrame as a dataset version (see the sync client)."""
        source, fmt = await asyncio.to_thread(open_dataset_source, data, format)
        with source:
            header = upload_header(
                dataset_id,
                fmt,
                description=description,
                labels=labels,
                request_id=request_id,
                csv_delimiter=csv_delimiter,
            )
            version: pb.DatasetVersion = await self._upload(
                self._stub.UploadDataset,
                pb.UploadDatasetRequest(header=header),
                lambda chunk: pb.UploadDatasetRequest(chunk=chunk),
                Chunks(source, progress, chunk_size),
                self._transfer(timeout),
            )
            return version

    async def import_dataset(
        self,
        dataset_id: str,
        *,
        uri: str | None = None,
        format: DataFormatLike = None,
        query: str | None = None,
        connection: str | None = None,
        url: str | None = None,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        progress: Callable[[pb.ImportProgress], None] | None = None,
        timeout: float | None = None,
    ) -> pb.DatasetVersion:
        """Import from an object (``uri=``) or a SQL query (``query=`` with ``connection=`` or ``url=``)."""
        request = import_request(
            dataset_id,
            uri=uri,
            format=format,
            query=query,
            connection=connection,
            url=url,
            description=description,
            labels=labels,
            request_id=request_id,
        )
        async for message in self._stream(self._stub.ImportDataset, request, self._transfer(timeout)):
            if message.HasField("dataset_version"):
                version: pb.DatasetVersion = message.dataset_version
                return version
            if progress is not None:
                progress(message.progress)
        raise RuntimeError("ImportDataset ended without a dataset version")

    async def transform_dataset(
        self,
        source: str,
        dataset_id: str,
        recipe: RecipeLike,
        *,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> pb.DatasetVersion:
        request = pb.TransformDatasetRequest(
            source=source,
            dataset_id=dataset_id,
            recipe=recipe_message(recipe),
            description=description,
            labels=dict(labels or {}),
            request_id=request_id,
        )
        version: pb.DatasetVersion = await self._call(self._stub.TransformDataset, request, self._transfer(timeout))
        return version

    async def get_dataset(self, name: str, *, timeout: float | None = None) -> pb.Dataset:
        request = pb.GetDatasetRequest(name=dataset_name(name))
        dataset: pb.Dataset = await self._call(self._stub.GetDataset, request, timeout)
        return dataset

    def list_datasets(
        self, *, filter: str = "", page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.Dataset]:
        request = pb.ListDatasetsRequest(filter=filter, page_size=page_size)
        return self._pages(self._stub.ListDatasets, request, lambda r: r.datasets, timeout)

    async def get_dataset_version(self, name: str, *, timeout: float | None = None) -> pb.DatasetVersion:
        request = pb.GetDatasetVersionRequest(name=name)
        version: pb.DatasetVersion = await self._call(self._stub.GetDatasetVersion, request, timeout)
        return version

    def list_dataset_versions(
        self, dataset: str, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[pb.DatasetVersion]:
        request = pb.ListDatasetVersionsRequest(parent=dataset_name(dataset), page_size=page_size)
        return self._pages(self._stub.ListDatasetVersions, request, lambda r: r.dataset_versions, timeout)

    @overload
    async def read_dataset(
        self,
        name: str,
        path: None = None,
        *,
        columns: Iterable[str] = (),
        split: str = "",
        format: DataFormatLike = "parquet",
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> bytes: ...

    @overload
    async def read_dataset(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        columns: Iterable[str] = (),
        split: str = "",
        format: DataFormatLike = "parquet",
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> pathlib.Path: ...

    async def read_dataset(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        *,
        columns: Iterable[str] = (),
        split: str = "",
        format: DataFormatLike = "parquet",
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> bytes | pathlib.Path:
        """A version's rows as Parquet (default) or CSV: bytes, or written to ``path``."""
        sink = await asyncio.to_thread(Sink, path, progress)
        try:
            request = read_request(name, columns, split, format)
            async for message in self._stream(self._stub.ReadDataset, request, self._transfer(timeout)):
                await asyncio.to_thread(sink.write, message.chunk)
        except BaseException:
            sink.abort()
            raise
        return await asyncio.to_thread(sink.finish)

    async def read_dataset_frame(
        self, name: str, *, columns: Iterable[str] = (), split: str = "", timeout: float | None = None
    ) -> Any:
        """A version's rows as a pandas DataFrame (needs pandas and pyarrow)."""
        data = await self.read_dataset(name, columns=columns, split=split, timeout=timeout)
        return await asyncio.to_thread(frame_from_parquet, data)

    async def get_profile(self, name: str, *, split: str = "", timeout: float | None = None) -> pb.Profile:
        request = pb.GetProfileRequest(name=name, split=split)
        profile: pb.Profile = await self._call(self._stub.GetProfile, request, timeout)
        return profile

    async def delete_dataset_version(self, name: str, *, timeout: float | None = None) -> None:
        await self._call(self._stub.DeleteDatasetVersion, pb.DeleteDatasetVersionRequest(name=name), timeout)
