"""Train's own settings, read once from the ``FERRY_TRAIN_*`` variables (README "Service")."""

from __future__ import annotations

from dataclasses import dataclass

from ferry_common.settings import Settings

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Train-specific configuration.

    Attributes:
        database_url: SQLAlchemy URL (``<state>/train.db`` by default).
        max_concurrent_jobs: jobs run at once on this machine; 0 runs none locally
            (jobs stay queued: for a service that only renders manifests, and for tests).
        db_threads: threads (and pooled connections) for database reads.
        poll_ms: how often the scheduler and watchers look at the database.
        cancel_grace_seconds: SIGTERM to SIGKILL delay when a running job is cancelled.
    """

    database_url: str
    max_concurrent_jobs: int = 1
    db_threads: int = 4
    poll_ms: int = 500
    cancel_grace_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainConfig:
        """Read and validate the ``FERRY_TRAIN_*`` variables.

        Raises:
            SettingsError: a variable is malformed; the message names it and its value.
        """
        return cls(
            database_url=settings.resolved_database_url(),
            max_concurrent_jobs=settings.get_int("FERRY_TRAIN_MAX_CONCURRENT_JOBS", 1, minimum=0),
            db_threads=settings.get_int("FERRY_TRAIN_DB_THREADS", 4, minimum=1),
            poll_ms=settings.get_int("FERRY_TRAIN_POLL_MS", 500, minimum=10),
        )
