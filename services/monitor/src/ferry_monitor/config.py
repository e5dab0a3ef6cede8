"""Monitor's own settings, read once from the ``FERRY_MONITOR_*`` variables (README "Settings")."""

from __future__ import annotations

from dataclasses import dataclass

from ferry_common.settings import Settings

__all__ = ["MonitorConfig"]


@dataclass(frozen=True)
class MonitorConfig:
    """Monitor-specific configuration.

    Attributes:
        database_url: SQLAlchemy URL of monitor's database (``<state>/monitor.db`` by default).
        retention_seconds: latency buckets older than this are deleted, and spans that ended
            earlier are rejected (they could not be kept).
        trace_store_bytes: serialized spans kept for GetTrace; the oldest traces go first.
        max_spans_per_trace: spans kept per trace (more are still aggregated).
        db_threads: threads (and pooled connections) for database reads.
        inference_retention_seconds: inference records older than this are deleted (feedback
            for them is reported unknown).
        max_inferences: inference records kept; the oldest beyond go at the next sweep.
        sweep_seconds: how often expired buckets are deleted.
        slo_evaluate_seconds: how often every SLO is judged (``FERRY_MONITOR_SLO_EVALUATE_SECONDS``).
    """

    database_url: str
    retention_seconds: int = 86_400
    trace_store_bytes: int = 64 * 1024 * 1024
    max_spans_per_trace: int = 10_000
    db_threads: int = 4
    inference_retention_seconds: int = 604_800
    max_inferences: int = 1_000_000
    sweep_seconds: int = 60
    slo_evaluate_seconds: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorConfig:
        """Read and validate the ``FERRY_MONITOR_*`` variables.

        Raises:
            SettingsError: a variable is malformed; the message names it and its value.
        """
        return cls(
            database_url=settings.resolved_database_url(),
            retention_seconds=settings.get_int("FERRY_MONITOR_RETENTION_SECONDS", 86_400, minimum=60),
            trace_store_bytes=settings.get_int("FERRY_MONITOR_TRACE_STORE_BYTES", 64 * 1024 * 1024, minimum=0),
            max_spans_per_trace=settings.get_int("FERRY_MONITOR_MAX_SPANS_PER_TRACE", 10_000, minimum=1),
            db_threads=settings.get_int("FERRY_MONITOR_DB_THREADS", 4, minimum=1),
            inference_retention_seconds=settings.get_int(
                "FERRY_MONITOR_INFERENCE_RETENTION_SECONDS", 604_800, minimum=60
            ),
            max_inferences=settings.get_int("FERRY_MONITOR_MAX_INFERENCES", 1_000_000, minimum=1),
            slo_evaluate_seconds=settings.get_int("FERRY_MONITOR_SLO_EVALUATE_SECONDS", 5, minimum=1),
        )
