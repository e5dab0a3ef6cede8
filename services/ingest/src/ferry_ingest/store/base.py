"""The ingest metadata database behind a small protocol (SQLAlchemy implementation).

Visibility rule: a version exists once its row is committed, and its objects are
written inside :meth:`DatasetStore.commit_version` *before* that commit, so a crash at
any point leaves either a complete version or nothing visible. The version number is
allocated inside the same transaction (the dataset row is locked: ``SELECT ... FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so a number whose commit
failed is simply allocated again and its orphaned objects are overwritten.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Set
from typing import Protocol

from ferry_common.objectstore import ObjectInfo
from ferry_ingest.domain import Dataset, DatasetVersion, VersionDraft

__all__ = ["DatasetStore", "SweepObjects", "WriteObjects"]

# Called with the allocated version number, inside the commit transaction; writes the
# version's objects and returns them by relative key (``data.parquet``, ...).
WriteObjects = Callable[[int], Mapping[str, ObjectInfo]]
# Called with the committed version numbers of a dataset, under its lock; removes the
# objects of every other number and returns those numbers.
SweepObjects = Callable[[Set[int]], list[int]]


class DatasetStore(Protocol):
    """Datasets and versions (metadata only; bytes live in the object store)."""

    def next_version(self, dataset_id: str) -> int:
        """The number the next commit to ``dataset_id`` will most likely get."""

    def find_version(self, dataset_id: str, *, sha256: str = "", request_id: str = "") -> DatasetVersion | None:
        """A version of ``dataset_id`` with this content hash or request id."""

    def commit_version(self, draft: VersionDraft, write_objects: WriteObjects) -> tuple[DatasetVersion, bool]:
        """Allocate a number, write the objects, commit the row.

        Returns the version and whether it was created (False: an existing version
        with the same request id or content hash, and ``write_objects`` was not called).
        """

    def get_dataset(self, dataset_id: str) -> Dataset:
        """NotFound when absent."""

    def list_datasets(
        self, page_size: int, after: str | None, labels: Mapping[str, str]
    ) -> tuple[list[Dataset], str | None]:
        """Datasets by id after ``after``; returns the page and the last id when more follow."""

    def get_version(self, dataset_id: str, version: int | None) -> DatasetVersion:
        """``version`` None: the newest existing version. NotFound when absent."""

    def list_versions(
        self, dataset_id: str, page_size: int, before: int | None
    ) -> tuple[list[DatasetVersion], int | None]:
        """Newest first, below ``before``; returns the page and the last number when more follow."""

    def delete_version(self, dataset_id: str, version: int) -> DatasetVersion:
        """Remove the row (the caller then deletes the objects). NotFound when absent."""

    def begin_pending(self, dataset_id: str) -> str:
        """Record that objects of ``dataset_id`` may appear without a row; returns the record's token."""

    def end_pending(self, token: str) -> None:
        """Remove the record (the commit or delete finished, either way)."""

    def list_pending(self) -> list[tuple[str, str, dt.datetime]]:
        """Records ``(token, dataset_id, create_time)``, oldest first."""

    def sweep_dataset(self, dataset_id: str, sweep: SweepObjects) -> list[int]:
        """Run ``sweep`` under the dataset's commit lock; returns the numbers it removed."""

    def close(self) -> None:
        """Release connections."""
