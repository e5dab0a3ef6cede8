"""Commits a version: objects first, then the metadata row, in one store transaction.

The store allocates the version number inside its commit transaction and calls back
here to write the objects under ``datasets/<dataset>/versions/<n>/``; the row is
committed only after every object (data, splits, profiles) is complete. Objects
staged at the tentative number are completed when that number won, and re-uploaded
from their local copy otherwise.

Objects therefore exist for a moment without a row, and a crash (``kill -9``) in that
moment would leave them in the bucket forever. So every commit and every delete is
recorded first, in its own transaction, as a *pending commit* of its dataset; the
record is removed when the work is done. At start, :func:`recover_pending` sweeps the
datasets of the records left behind: under the same lock a commit holds, it deletes
every ``versions/<n>/`` prefix whose number has no committed row.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from ferry_common.errors import Unavailable
from ferry_common.logs import get_logger
from ferry_common.objectstore import ObjectInfo, ObjectStore
from ferry_ingest.domain import DatasetVersion, VersionDraft, version_key
from ferry_ingest.objects import PreparedObject
from ferry_ingest.store import DatasetStore
from ferry_profile import Profile

__all__ = [
    "PENDING_RECORD_TTL",
    "PendingVersion",
    "commit_version",
    "delete_version",
    "profile_bytes",
    "profile_key",
    "recover_pending",
    "split_key",
]

# Records younger than this may belong to another replica's commit in progress: they
# are swept (always safe under the lock) but kept for their owner to remove.
PENDING_RECORD_TTL = dt.timedelta(hours=1)

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
                written[obj.relkey] = staged.complete()
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
    token = store.begin_pending(pending.draft.dataset_id)
    try:
        return store.commit_version(pending.draft, lambda number: _write(objects, pending, number))
    finally:
        pending.discard()
        _end_pending(store, token)


def delete_version(store: DatasetStore, objects: ObjectStore, dataset_id: str, version: int) -> DatasetVersion:
    """Remove the row, then the objects (blocking: run in a worker thread)."""
    token = store.begin_pending(dataset_id)
    try:
        found = store.delete_version(dataset_id, version)
        objects.delete_prefix(f"{_versions_prefix(dataset_id)}{version}/")
        return found
    finally:
        _end_pending(store, token)


def _end_pending(store: DatasetStore, token: str) -> None:
    try:
        store.end_pending(token)
    except Exception as exc:  # the record only costs a sweep at the next start
        _log.warning("pending commit record not removed", token=token, error=str(exc))


def _versions_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/versions/"


def _sweep(objects: ObjectStore, dataset_id: str, committed: Set[int]) -> list[int]:
    prefix = _versions_prefix(dataset_id)
    orphans: set[int] = set()
    for key in objects.list(prefix):
        segment = key[len(prefix) :].split("/", 1)[0]
        if segment.isascii() and segment.isdigit() and int(segment) not in committed:
            orphans.add(int(segment))
    for number in sorted(orphans):
        objects.delete_prefix(f"{prefix}{number}/")
    return sorted(orphans)


def recover_pending(store: DatasetStore, objects: ObjectStore, now: dt.datetime | None = None) -> list[str]:
    """Remove the objects of commits and deletes a crash interrupted (blocking; run at start).

    Returns the ``datasets/<d>/versions/<n>`` prefixes removed.
    """
    now = now or dt.datetime.now(dt.UTC)
    removed: list[str] = []
    swept: set[str] = set()
    for token, dataset_id, created in store.list_pending():
        if dataset_id not in swept:
            swept.add(dataset_id)
            numbers = store.sweep_dataset(dataset_id, functools.partial(_sweep, objects, dataset_id))
            removed.extend(f"{_versions_prefix(dataset_id)}{n}" for n in numbers)
        if now - created > PENDING_RECORD_TTL:
            store.end_pending(token)
    if removed:
        _log.warning("removed objects of interrupted commits", prefixes=removed)
    return removed
