"""The SQLAlchemy implementation of :class:`~ferry_registry.store.base.RegistryStore`.

Every method is one transaction. Writes lock in one fixed order so that concurrent
transactions never deadlock: the model rows involved (sorted by id, ``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the whole database),
then the ``registry_state`` counter row (taken by the ``UPDATE`` that hands out the next
revision, held until commit). Locking the model row serialises everything that changes
one model's versions and aliases, so a compare-and-set reads the state it writes against;
holding the counter row until commit makes revisions gap-free and committed in order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ferry_common.database import Database
from ferry_registry.store.aliases import AliasTransactions
from ferry_registry.store.models import ModelTransactions
from ferry_registry.store.versions import VersionTransactions

__all__ = ["SqlRegistryStore"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqlRegistryStore(ModelTransactions, VersionTransactions, AliasTransactions):
    """Registry state in a SQL database (SQLite or PostgreSQL), one module per resource."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = _utcnow) -> None:
        self._reads = database.reads
        self._writes = database.writes
        self._clock = clock
