"""The registry's own settings, read once from the ``FERRY_REGISTRY_*`` variables.

Every variable is documented in ``services/registry/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry_common.settings import Settings, SettingsError

__all__ = ["RegistryConfig"]

_SYNCHRONOUS = ("FULL", "EXTRA", "NORMAL")
_CACHE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class RegistryConfig:
    """Registry-specific configuration.

    Attributes:
        database_url: SQLAlchemy URL (SQLite file under the state dir by default).
        db_threads: threads (and pooled connections) for database reads; on PostgreSQL
            writes use them too. SQLite writes go through one dedicated writer thread.
        sqlite_synchronous: ``FULL`` (default: every acknowledged commit is on disk),
            ``EXTRA``, or ``NORMAL`` (survives a process crash, not a power loss).
        sqlite_busy_timeout_ms: how long a SQLite writer waits for another process's lock.
        watch_poll_ms: how often watchers poll the database for events committed by
            another registry process (events of this process wake them at once).
        resolve_cache: ``on`` / ``off`` / ``auto``; ``auto`` enables the in-memory
            ResolveAlias cache on SQLite, where this process is the only writer.
        max_artifact_bytes: largest artifact UploadModelVersion accepts.
    """

    database_url: str
    db_threads: int = 8
    sqlite_synchronous: str = "FULL"
    sqlite_busy_timeout_ms: int = 5000
    watch_poll_ms: int = 1000
    resolve_cache: str = "auto"
    max_artifact_bytes: int = 4 * 1024**3

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def resolve_cache_enabled(self) -> bool:
        if self.resolve_cache == "auto":
            return self.is_sqlite
        return self.resolve_cache == "on"

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryConfig:
        """Read and validate the ``FERRY_REGISTRY_*`` variables.

        Raises:
            SettingsError: a variable is malformed; the message names it and its value.
        """
        synchronous = settings.get_str("FERRY_REGISTRY_SQLITE_SYNCHRONOUS", "FULL").strip().upper()
        if synchronous not in _SYNCHRONOUS:
            raise SettingsError(
                f"FERRY_REGISTRY_SQLITE_SYNCHRONOUS: {synchronous!r} is not one of {', '.join(_SYNCHRONOUS)}"
            )
        cache = settings.get_str("FERRY_REGISTRY_RESOLVE_CACHE", "auto").strip().lower()
        if cache not in _CACHE_MODES:
            raise SettingsError(f"FERRY_REGISTRY_RESOLVE_CACHE: {cache!r} is not one of {', '.join(_CACHE_MODES)}")
        return cls(
            database_url=settings.resolved_database_url(),
            db_threads=settings.get_int("FERRY_REGISTRY_DB_THREADS", 8, minimum=1),
            sqlite_synchronous=synchronous,
            sqlite_busy_timeout_ms=settings.get_int("FERRY_REGISTRY_SQLITE_BUSY_TIMEOUT_MS", 5000, minimum=0),
            watch_poll_ms=settings.get_int("FERRY_REGISTRY_WATCH_POLL_MS", 1000, minimum=10),
            resolve_cache=cache,
            max_artifact_bytes=settings.get_int("FERRY_REGISTRY_MAX_ARTIFACT_BYTES", 4 * 1024**3, minimum=1),
        )
