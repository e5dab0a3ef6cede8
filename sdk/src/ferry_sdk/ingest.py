"""The blocking client of ``ferry.ingest.v1.IngestService``."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, overload

import grpc

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry.ingest.v1 import ingest_pb2_grpc
from ferry_sdk._base import SyncClient
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

__all__ = ["IngestClient"]

SERVICE = "ferry.ingest.v1.IngestService"


class IngestClient(SyncClient):
    """Datasets and dataset versions, blocking.

    Args:
        address: ``host:port``; default ``FERRY_INGEST_ADDRESS`` (through ``ferry_common.settings``).
        settings: the caller's settings (token, TLS, default deadline); read from the
            ``FERRY_*`` environment when omitted.
        timeout: default deadline of unary calls, seconds (default ``FERRY_CALL_TIMEOUT_SECONDS``).
        transfer_timeout: default deadline of uploads, reads and imports, seconds.
        tracer_provider: record client spans and propagate the trace context.

    Every method raises a :class:`ferry_sdk.errors.FerryError` subclass on failure.
    Where a dataset is expected, ``wine`` and ``datasets/wine`` both work.

        with IngestClient() as ingest:
            version = ingest.upload_dataset("wine", "wine.csv")
            frame = ingest.read_dataset_frame(version.name)
    """

    _service = "ingest"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.Channel) -> None:
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)

    def upload_dataset(
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
        """Upload a file as a new dataset version (the same bytes again return the existing version).

        Args:
            dataset_id: ``^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$``.
            data: a path, bytes, a binary file object or a pandas DataFrame (sent as
                Parquet, which keeps column types, unless ``format`` says otherwise).
            format: ``csv``, ``parquet`` or ``jsonl``; default from the file extension,
                else from the first bytes.
            progress: called as ``progress(bytes_sent, total_or_None)`` after each 1 MiB
                chunk (from gRPC's sending thread).
            request_id: idempotency key.
            chunk_size: bytes per stream message (default 1 MiB).
        """
        source, fmt = open_dataset_source(data, format)
        with source:
            header = upload_header(
                dataset_id,
                fmt,
                description=description,
                labels=labels,
                request_id=request_id,
                csv_delimiter=csv_delimiter,
            )
            version: pb.DatasetVersion = self._upload(
                self._stub.UploadDataset,
                pb.UploadDatasetRequest(header=header),
                lambda chunk: pb.UploadDatasetRequest(chunk=chunk),
                Chunks(source, progress, chunk_size),
                self._transfer(timeout),
            )
            return version

    def import_dataset(
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
        """Import from an object (``uri=``) or a SQL query (``query=`` with ``connection=`` or ``url=``).

        Args:
            progress: called with each ``ImportProgress`` (rows and bytes read so far).

        Returns:
            The new (or, for the same content, the existing) version.
        """
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
        for message in self._stream(self._stub.ImportDataset, request, self._transfer(timeout)):
            if message.HasField("dataset_version"):
                version: pb.DatasetVersion = message.dataset_version
                return version
            if progress is not None:
                progress(message.progress)
        raise RuntimeError("ImportDataset ended without a dataset version")

    def transform_dataset(
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
        """Apply a recipe to ``source`` (``datasets/d/versions/n``), making a version of ``dataset_id``."""
        request = pb.TransformDatasetRequest(
            source=source,
            dataset_id=dataset_id,
            recipe=recipe_message(recipe),
            description=description,
            labels=dict(labels or {}),
            request_id=request_id,
        )
        version: pb.DatasetVersion = self._call(self._stub.TransformDataset, request, self._transfer(timeout))
        return version

    def get_dataset(self, name: str, *, timeout: float | None = None) -> pb.Dataset:
        dataset: pb.Dataset = self._call(self._stub.GetDataset, pb.GetDatasetRequest(name=dataset_name(name)), timeout)
        return dataset

    def list_datasets(
        self, *, filter: str = "", page_size: int = 0, timeout: float | None = None
    ) -> Iterator[pb.Dataset]:
        """Every dataset (``filter``: ``labels.k=v AND ...``), fetched page by page as iterated."""
        request = pb.ListDatasetsRequest(filter=filter, page_size=page_size)
        return self._pages(self._stub.ListDatasets, request, lambda r: r.datasets, timeout)

    def get_dataset_version(self, name: str, *, timeout: float | None = None) -> pb.DatasetVersion:
        """Get ``datasets/d/versions/n`` (or ``.../versions/latest``)."""
        request = pb.GetDatasetVersionRequest(name=name)
        version: pb.DatasetVersion = self._call(self._stub.GetDatasetVersion, request, timeout)
        return version

    def list_dataset_versions(
        self, dataset: str, *, page_size: int = 0, timeout: float | None = None
    ) -> Iterator[pb.DatasetVersion]:
        """Every version of a dataset, newest first, fetched page by page as iterated."""
        request = pb.ListDatasetVersionsRequest(parent=dataset_name(dataset), page_size=page_size)
        return self._pages(self._stub.ListDatasetVersions, request, lambda r: r.dataset_versions, timeout)

    @overload
    def read_dataset(
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
    def read_dataset(
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

    def read_dataset(
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
        """A version's rows as Parquet (default) or CSV: returned as bytes, or written to ``path``.

        Args:
            columns: only these columns.
            split: only this split (``train``).
            progress: called as ``progress(bytes_received, None)`` after each chunk.
        """
        sink = Sink(path, progress)
        try:
            request = read_request(name, columns, split, format)
            for message in self._stream(self._stub.ReadDataset, request, self._transfer(timeout)):
                sink.write(message.chunk)
        except BaseException:
            sink.abort()
            raise
        return sink.finish()

    def read_dataset_frame(
        self, name: str, *, columns: Iterable[str] = (), split: str = "", timeout: float | None = None
    ) -> Any:
        """A version's rows as a pandas DataFrame (needs pandas and pyarrow)."""
        return frame_from_parquet(self.read_dataset(name, columns=columns, split=split, timeout=timeout))

    def get_profile(self, name: str, *, split: str = "", timeout: float | None = None) -> pb.Profile:
        """A version's (or one split's) column statistics."""
        profile: pb.Profile = self._call(self._stub.GetProfile, pb.GetProfileRequest(name=name, split=split), timeout)
        return profile

    def delete_dataset_version(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a version and its objects."""
        self._call(self._stub.DeleteDatasetVersion, pb.DeleteDatasetVersionRequest(name=name), timeout)
