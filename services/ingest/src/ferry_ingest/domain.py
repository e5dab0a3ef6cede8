"""Domain objects of the ingest service (no grpc, no SQLAlchemy)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferry_ingest.recipe import Recipe

__all__ = [
    "DataFormat",
    "Dataset",
    "DatasetVersion",
    "Lineage",
    "SchemaField",
    "Split",
    "VersionDraft",
    "dataset_name",
    "version_key",
    "version_name",
]


class DataFormat(enum.Enum):
    """A file format a source may have."""

    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


def dataset_name(dataset_id: str) -> str:
    return f"datasets/{dataset_id}"


def version_name(dataset_id: str, version: int) -> str:
    return f"datasets/{dataset_id}/versions/{version}"


def version_key(dataset_id: str, version: int, relkey: str) -> str:
    """Object key of a version's file: ``datasets/<id>/versions/<n>/<relkey>``."""
    return f"datasets/{dataset_id}/versions/{version}/{relkey}"


@dataclass(frozen=True)
class SchemaField:
    """One column: name, Arrow type name, whether it holds nulls."""

    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class Split:
    """A named part of a version made by a split step."""

    name: str
    row_count: int
    uri: str


@dataclass(frozen=True)
class Lineage:
    """Where a version came from."""

    parent: str = ""
    recipe: Recipe | None = None
    source_uri: str = ""
    source_query: str = ""
    source_format: DataFormat | None = None


@dataclass(frozen=True)
class Dataset:
    dataset_id: str
    description: str
    labels: Mapping[str, str]
    latest_version: int
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True)
class DatasetVersion:
    dataset_id: str
    version: int
    sha256: str
    row_count: int
    size_bytes: int
    schema: tuple[SchemaField, ...]
    uri: str
    splits: tuple[Split, ...]
    lineage: Lineage
    description: str
    labels: Mapping[str, str]
    create_time: dt.datetime
    request_id: str = ""

    @property
    def name(self) -> str:
        return version_name(self.dataset_id, self.version)


@dataclass
class VersionDraft:
    """Everything about a version except its number, uris and create time.

    ``split_rows`` lists the splits (in recipe order) with their row counts; their
    objects are ``splits/<name>.parquet`` under the version's prefix.
    """

    dataset_id: str
    sha256: str
    row_count: int
    schema: tuple[SchemaField, ...]
    lineage: Lineage
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""
    split_rows: tuple[tuple[str, int], ...] = ()
