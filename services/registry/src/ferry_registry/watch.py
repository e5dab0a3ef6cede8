"""Wakes alias watchers when the global revision moves.

Alias events carry a global, gap-free revision that commits in order, so "every event
up to revision R" is always a prefix of the log. The bus only tracks the newest
revision known to be committed: writes of this process advance it right after their
commit, and a poll of the database advances it for writes of other registry processes
sharing the same PostgreSQL database. Watchers re-read the log from the database after
each wake-up, so a missed or coalesced wake-up never loses an event.
"""

from __future__ import annotations

import asyncio

__all__ = ["RevisionBus"]


class RevisionBus:
    """The newest committed revision, and a way to wait for a newer one (event loop only)."""

    def __init__(self, revision: int = 0) -> None:
        self.revision = revision
        self._changed = asyncio.Event()
        self.closed = False

    def advance(self, revision: int) -> bool:
        """Record that ``revision`` is committed; wakes waiters. Returns whether it moved."""
        if revision <= self.revision:
            return False
        self.revision = revision
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return True

    async def wait_beyond(self, revision: int) -> None:
        """Return once the bus is past ``revision`` or closed."""
        while self.revision <= revision and not self.closed:
            await self._changed.wait()

    def close(self) -> None:
        """Release every waiter for good (server shutdown)."""
        self.closed = True
        self._changed.set()
