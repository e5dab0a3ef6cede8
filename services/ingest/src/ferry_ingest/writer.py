"""Commits a version: objects first, then the metadata row, in one store transaction.

The store allocates the version number inside its commit transaction and calls back
here to write the objects under ``datasets/<dataset>/versions/<n>/``; the row is
committed only after every object (data, splits, profiles) is complete. Objects
staged at the tentative number are completed when that number won, and re-uploaded
from their local copy otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from ferry_common.errors import Unavailable
from ferry_common.logs import get_logger
from ferry_common.objectstore import ObjectInfo, ObjectStore
from ferry_ingest.domain import DatasetVersion, VersionDraft, version_key
from ferry_ingest.objects import PreparedObject
from ferry_ingest.profile import Profile
from ferry_ingest.store import DatasetStore

__all__ = ["PendingVersion", "commit_version", "profile_bytes", "profile_key", "split_key"]

_log = get_logger("ferry.ingest.writer")


def split_key(name: str) -> str:
    return f"splits/{name}.parquet"


def profile_key(split: str = "") -> str:
    return f"splits/{split}.profile.json" if split else "profile.json"


def profile_bytes(profile: Profile) -> bytes:
    return json.dumps(profile.to_json_dict(), separators=(",", ":")).encode()


@dataclass
class PendingVersion:
    """A version ready to commit.

    Attributes:
        draft: the metadata.
        objects: ``data.parquet`` and the split files, each with its local copy.
        profiles: profile JSON objects by relative key (``profile.json``, ...).
        tentative: the number staged uploads were started under.
    """

    draft: VersionDraft
    objects: list[PreparedObject]
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    tentative: int = 0

    def discard(self) -> None:
        """Abort uploads that were not completed (safe to call more than once)."""
        for obj in self.objects:
            obj.discard_stage()


def _write(objects: ObjectStore, pending: PendingVersion, number: int) -> dict[str, ObjectInfo]:
    dataset = pending.draft.dataset_id
    written: dict[str, ObjectInfo] = {}
    for obj in pending.objects:
        key = version_key(dataset, number, obj.relkey)
        staged, obj.staged = obj.staged, None
        if staged is not None and number == pending.tentative:
            try:
                staged.complete()
                written[obj.relkey] = ObjectInfo(key, objects.uri(key), obj.path.stat().st_size, "")
                continue
            except Unavailable as exc:
                _log.warning("staged upload failed; uploading again", key=key, error=str(exc))
        elif staged is not None:
            staged.abort()
        written[obj.relkey] = objects.put_file(key, obj.path)
    for relkey, profile in pending.profiles.items():
        objects.put_chunks(version_key(dataset, number, relkey), [profile_bytes(profile)])
    return written


def commit_version(store: DatasetStore, objects: ObjectStore, pending: PendingVersion) -> tuple[DatasetVersion, bool]:
    """Write the objects and commit the row (blocking: run in a worker thread).

    Returns the version and whether it is new (False: the same content or request id
    was committed meanwhile; nothing was written).
    """
    try:
        return store.commit_version(pending.draft, lambda number: _write(objects, pending, number))
    finally:
        pending.discard()
