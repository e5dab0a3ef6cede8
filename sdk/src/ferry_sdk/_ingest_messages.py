"""Request messages of ``ferry.ingest.v1`` from Pythonic arguments (both client flavours)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from google.protobuf import json_format

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_sdk._sources import Source, UploadInput, dataframe_format, is_dataframe, open_source

__all__ = [
    "DataFormatLike",
    "RecipeLike",
    "data_format",
    "dataset_name",
    "frame_from_parquet",
    "import_request",
    "open_dataset_source",
    "read_request",
    "recipe_message",
    "upload_header",
]

DataFormatLike: TypeAlias = "str | pb.DataFormat | None"
"""``"csv"``, ``"parquet"``, ``"jsonl"``, a ``DataFormat`` value, or ``None`` (guessed)."""
RecipeLike: TypeAlias = "pb.Recipe | Iterable[pb.RecipeStep] | Mapping[str, Any]"
"""A ``Recipe``, its steps, or its proto3 JSON as a dict (``{"steps": [{"split": {...}}]}``)."""

_NAMES = {"csv": pb.DATA_FORMAT_CSV, "parquet": pb.DATA_FORMAT_PARQUET, "jsonl": pb.DATA_FORMAT_JSONL}
_SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def dataset_name(dataset: str) -> str:
    """``wine`` or ``datasets/wine`` -> ``datasets/wine``."""
    return dataset if dataset.startswith("datasets/") else f"datasets/{dataset}"


def _format_value(requested: str | pb.DataFormat) -> pb.DataFormat:
    if isinstance(requested, str):
        key = requested.lower().removeprefix("data_format_")
        if key not in _NAMES:
            raise ValueError(f"format {requested!r} is not one of {', '.join(_NAMES)}")
        return _NAMES[key]
    return requested


def data_format(requested: DataFormatLike, source: Source) -> pb.DataFormat:
    """The format of an upload: as requested, else from the file extension, else from its first bytes."""
    if requested:
        return _format_value(requested)
    if source.suffix in _SUFFIXES:
        return _NAMES[_SUFFIXES[source.suffix]]
    if source.head.startswith(b"PAR1"):
        return pb.DATA_FORMAT_PARQUET
    if source.head.lstrip().startswith(b"{"):
        return pb.DATA_FORMAT_JSONL
    if source.head:
        return pb.DATA_FORMAT_CSV
    raise ValueError(
        "cannot tell the upload's format (no file name, not seekable): pass format='csv'|'parquet'|'jsonl'"
    )


def open_dataset_source(data: UploadInput, requested: DataFormatLike) -> tuple[Source, pb.DataFormat]:
    """Open an upload input; a DataFrame is written as Parquet unless a format is requested."""
    if is_dataframe(data):
        name = {value: key for key, value in _NAMES.items()}[_format_value(requested)] if requested else None
        source = open_source(data, dataframe_fmt=dataframe_format(data, name))
    else:
        source = open_source(data)
    try:
        return source, data_format(requested, source)
    except ValueError:
        source.close()
        raise


def upload_header(
    dataset_id: str,
    fmt: pb.DataFormat,
    *,
    description: str,
    labels: Mapping[str, str] | None,
    request_id: str,
    csv_delimiter: str | None,
) -> pb.UploadDatasetHeader:
    header = pb.UploadDatasetHeader(
        dataset_id=dataset_id,
        format=fmt,
        description=description,
        labels=dict(labels or {}),
        request_id=request_id,
    )
    if csv_delimiter is not None:
        header.csv.delimiter = csv_delimiter
    return header


def import_request(
    dataset_id: str,
    *,
    uri: str | None,
    format: DataFormatLike,
    query: str | None,
    connection: str | None,
    url: str | None,
    description: str,
    labels: Mapping[str, str] | None,
    request_id: str,
) -> pb.ImportDatasetRequest:
    if (uri is None) == (query is None):
        raise ValueError("import_dataset: give either uri= (an object) or query= (SQL, with connection= or url=)")
    request = pb.ImportDatasetRequest(
        dataset_id=dataset_id, description=description, labels=dict(labels or {}), request_id=request_id
    )
    if uri is not None:
        request.object.uri = uri
        if format:
            request.object.format = _format_value(format)
    else:
        request.sql.query = query or ""
        request.sql.connection = connection or ""
        request.sql.url = url or ""
    return request


def recipe_message(recipe: RecipeLike) -> pb.Recipe:
    if isinstance(recipe, pb.Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return json_format.ParseDict(dict(recipe), pb.Recipe())
    return pb.Recipe(steps=list(recipe))


def read_request(
    name: str, columns: Iterable[str], split: str, format: DataFormatLike = "parquet"
) -> pb.ReadDatasetRequest:
    return pb.ReadDatasetRequest(
        name=name, columns=list(columns), split=split, format=_format_value(format or "parquet")
    )


def frame_from_parquet(data: bytes) -> Any:
    """A pandas DataFrame of Parquet bytes (pyarrow and pandas imported only here)."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pandas()
