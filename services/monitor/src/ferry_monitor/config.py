"""Monitor's own settings, read once from the ``FERRY_MONITOR_*`` variables (README "Settings")."""

from __future__ import annotations

from dataclasses import dataclass

from ferry_common.settings import Settings
from ferry_monitor.metrics import DEFAULT_MAX_SERIES, parse_metrics_address

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
        metrics_address: (host, port) of Prometheus ``/metrics`` (``FERRY_MONITOR_METRICS_ADDRESS``);
            ``None`` (unset or empty) = no metrics endpoint.
        metrics_max_series: latency and drift series exported at most
            (``FERRY_MONITOR_METRICS_MAX_SERIES``).
        drift_evaluate_seconds: how often versions of models with a policy are judged for
            drift (``FERRY_MONITOR_DRIFT_EVALUATE_SECONDS``).
        drift_window_seconds: the window of that periodic judgement
            (``FERRY_MONITOR_DRIFT_WINDOW_SECONDS``).
        drift_min_samples: recorded rows a window needs before a version can be judged in
            breach (``FERRY_MONITOR_DRIFT_MIN_SAMPLES``).
        drift_max_samples: newest records profiled per report (``FERRY_MONITOR_DRIFT_MAX_SAMPLES``).
        accuracy_min_labels: labelled rows (ground truth and a ``label`` output) a window needs
            before a version's accuracy is judged against its policy's ``min_accuracy``
            (``FERRY_MONITOR_ACCURACY_MIN_LABELS``).
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
    metrics_address: tuple[str, int] | None = None
    metrics_max_series: int = DEFAULT_MAX_SERIES
    drift_evaluate_seconds: int = 60
    drift_window_seconds: int = 3600
    drift_min_samples: int = 100
    drift_max_samples: int = 100_000
    accuracy_min_labels: int = 100

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
            metrics_address=parse_metrics_address(
                "FERRY_MONITOR_METRICS_ADDRESS", settings.get_str("FERRY_MONITOR_METRICS_ADDRESS", "")
            ),
            metrics_max_series=settings.get_int("FERRY_MONITOR_METRICS_MAX_SERIES", DEFAULT_MAX_SERIES, minimum=1),
            drift_evaluate_seconds=settings.get_int("FERRY_MONITOR_DRIFT_EVALUATE_SECONDS", 60, minimum=1),
            drift_window_seconds=settings.get_int("FERRY_MONITOR_DRIFT_WINDOW_SECONDS", 3600, minimum=60),
            drift_min_samples=settings.get_int("FERRY_MONITOR_DRIFT_MIN_SAMPLES", 100, minimum=1),
            drift_max_samples=settings.get_int("FERRY_MONITOR_DRIFT_MAX_SAMPLES", 100_000, minimum=1),
            accuracy_min_labels=settings.get_int("FERRY_MONITOR_ACCURACY_MIN_LABELS", 100, minimum=1),
        )
