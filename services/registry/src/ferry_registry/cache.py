"""An in-memory ResolveAlias cache that never serves a value older than a local write.

Used only while this process is the only writer of the database (the SQLite default;
``FERRY_REGISTRY_RESOLVE_CACHE``). All of its methods run on the event loop thread, so
they need no locks.

Correctness rule: every write clears the cache when it starts and when it ends, and a
read may fill the cache only if no write started or was running between the moment it
took its :meth:`ResolveCache.ticket` and the moment it calls :meth:`ResolveCache.put`.
A filled value therefore reflects every write acknowledged so far, and stays valid
until the next write begins.
"""

from __future__ import annotations

from ferry_registry.domain import ModelVersion

__all__ = ["ResolveCache"]


class ResolveCache:
    """``(model, alias) -> ModelVersion``, cleared by every local write."""

    def __init__(self, enabled: bool, max_entries: int = 10_000) -> None:
        self.enabled = enabled
        self._max_entries = max_entries
        self._entries: dict[tuple[str, str], ModelVersion] = {}
        self._generation = 0
        self._writers = 0

    def get(self, model_id: str, alias_id: str) -> ModelVersion | None:
        return self._entries.get((model_id, alias_id))

    def ticket(self) -> int | None:
        """Taken before a database read; ``None`` when the result must not be cached."""
        if not self.enabled or self._writers:
            return None
        return self._generation

    def put(self, ticket: int | None, model_id: str, alias_id: str, value: ModelVersion) -> None:
        if ticket is None or ticket != self._generation or self._writers:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[(model_id, alias_id)] = value

    def begin_write(self) -> None:
        self._writers += 1
        self.invalidate()

    def end_write(self) -> None:
        self._writers -= 1
        self.invalidate()

    def invalidate(self) -> None:
        """Forget everything (a local write, or a change seen from another process)."""
        self._generation += 1
        self._entries.clear()
