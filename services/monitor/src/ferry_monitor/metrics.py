"""Prometheus ``/metrics`` of monitor: request counts, errors and latency histograms per series, drift scores.

Off unless ``FERRY_MONITOR_METRICS_ADDRESS`` (``host:port``) is set; then prometheus_client's
own HTTP server answers ``GET /metrics`` there (a daemon thread, not the gRPC port).

What is exported (README "Prometheus metrics"); the labels of the span series are those of
monitor's latency series (:class:`~ferry_monitor.domain.SeriesKey`: ``service``, ``method``,
``deployment``, ``model``, ``version``, ``route``; empty when a span lacks the attribute):

- ``ferry_monitor_requests_total``: aggregated spans (requests) acknowledged to an exporter.
- ``ferry_monitor_request_errors_total``: those of them with an ERROR status.
- ``ferry_monitor_request_duration_seconds``: their durations (histogram, :data:`LATENCY_BUCKETS_SECONDS`).
- ``ferry_monitor_spans_total{outcome="accepted"|"rejected"}``: every span an Export brought.
- ``ferry_monitor_series_dropped_total``: additions refused because the cap on series
  (``FERRY_MONITOR_METRICS_MAX_SERIES``, default :data:`DEFAULT_MAX_SERIES`; span and drift
  series each) was reached; counted each time one is refused. Their spans still count in
  monitor's own latency queries.
- ``ferry_monitor_drift_score{model,version,feature,statistic}`` and
  ``ferry_monitor_drift_detected{...}`` (0 or 1): the last drift measurement of each feature,
  as given to :func:`observe_drift`.
- ``ferry_monitor_alerts_total{kind}``: alerts raised, as given to :func:`observe_alert`.

Cost on the receiving path: counts are taken per batch from the decoded latency deltas
(one histogram of each delta's durations with numpy), not per span; the HTTP thread reads a
snapshot under a lock. Counted only once the batch is committed (acknowledged), so the
counts are those of spans an exporter was told were kept.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ferry_common.settings import SettingsError
from ferry_monitor.domain import SeriesKey
from ferry_monitor.otlp import DecodedBatch

__all__ = [
    "DEFAULT_MAX_SERIES",
    "LATENCY_BUCKETS_SECONDS",
    "METRIC_NAMES",
    "BatchCounts",
    "MonitorMetrics",
    "activate",
    "active",
    "observe_alert",
    "observe_drift",
    "parse_metrics_address",
]

# Upper bounds (le) of the latency histogram, in seconds; +Inf is added.
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
DEFAULT_MAX_SERIES = 10_000
_SERIES_LABELS = ("service", "method", "deployment", "model", "version", "route")
_DRIFT_LABELS = ("model", "version", "feature", "statistic")
_BOUNDS_MS = np.array([bound * 1000.0 for bound in LATENCY_BUCKETS_SECONDS])
_BOUNDS_MS_LIST = [float(bound) for bound in _BOUNDS_MS]
_LE = [f"{bound:g}" for bound in LATENCY_BUCKETS_SECONDS] + ["+Inf"]
# Below this many durations a Python bisect beats numpy's per-call overhead.
_NUMPY_FROM = 32

# Every family name monitor exports (the names as scraped: counters gain ``_total``,
# histograms ``_bucket``/``_sum``/``_count``). Dashboards and tests check queries against it.
METRIC_NAMES: dict[str, str] = {
    "ferry_monitor_requests": "counter",
    "ferry_monitor_request_errors": "counter",
    "ferry_monitor_request_duration_seconds": "histogram",
    "ferry_monitor_spans": "counter",
    "ferry_monitor_series_dropped": "counter",
    "ferry_monitor_drift_score": "gauge",
    "ferry_monitor_drift_detected": "gauge",
    "ferry_monitor_alerts": "counter",
}

Counts = npt.NDArray[np.int64]
_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]*):(?P<port>\d{1,5})$")


def parse_metrics_address(key: str, raw: str) -> tuple[str, int] | None:
    """``host:port`` (``[::1]:9464``, ``:9464`` = every interface) -> (host, port); empty = off.

    Raises:
        SettingsError: not ``host:port``, or a port above 65535; names the variable and value.
    """
    text = raw.strip()
    if not text:
        return None
    match = _ADDRESS.match(text)
    if not match or int(match["port"]) > 65535:
        raise SettingsError(f"{key}: {raw!r} is not an address of the form host:port")
    host = match["host"].strip("[]") or "0.0.0.0"
    return host, int(match["port"])


@dataclass
class _Series:
    count: int = 0
    errors: int = 0
    sum_ms: float = 0.0
    buckets: Counts = field(default_factory=lambda: np.zeros(len(_LE), dtype=np.int64))


@dataclass
class BatchCounts:
    """What one batch adds, computed before its commit (the commit merges deltas in place)."""

    series: dict[SeriesKey, _Series]
    accepted: int
    rejected: int


def _histogram(durations_ms: list[float]) -> Counts:
    # Bucket i counts durations in (bound[i-1], bound[i]]: Prometheus's "le".
    if len(durations_ms) >= _NUMPY_FROM:
        indexes = np.searchsorted(_BOUNDS_MS, np.asarray(durations_ms, dtype=np.float64), side="left")
        return np.bincount(indexes, minlength=len(_LE)).astype(np.int64)
    counts = np.zeros(len(_LE), dtype=np.int64)
    for duration in durations_ms:
        counts[bisect.bisect_left(_BOUNDS_MS_LIST, duration)] += 1
    return counts


class MonitorMetrics(Collector):
    """Monitor's metrics in a registry of their own (never prometheus_client's global one).

    ``registry`` can be scraped in-process (``generate_latest(metrics.registry)``) or served
    with :meth:`serve`.
    """

    def __init__(self, *, max_series: int = DEFAULT_MAX_SERIES) -> None:
        self._lock = threading.Lock()
        self._max_series = max_series
        self._series: dict[SeriesKey, _Series] = {}
        self._dropped = 0
        self._accepted = 0
        self._rejected = 0
        self._drift: dict[tuple[str, str, str, str], tuple[float, bool]] = {}
        self._alerts: dict[str, int] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ---------------------------------------------------------------- recording

    @staticmethod
    def count(batch: DecodedBatch) -> BatchCounts:
        """Per-series counts and histograms of a decoded batch (call before it is committed)."""
        series: dict[SeriesKey, _Series] = {}
        for (_, key), delta in batch.deltas.items():
            mine = series.get(key)
            if mine is None:
                mine = series[key] = _Series()
            mine.count += delta.count
            mine.errors += delta.error_count
            mine.sum_ms += sum(delta.durations_ms)
            mine.buckets += _histogram(delta.durations_ms)
        return BatchCounts(series, batch.accepted, batch.rejected)

    def add(self, counts: BatchCounts) -> None:
        """Add a batch's counts (once the batch is acknowledged)."""
        with self._lock:
            self._accepted += counts.accepted
            self._rejected += counts.rejected
            for key, added in counts.series.items():
                mine = self._series.get(key)
                if mine is None:
                    if len(self._series) >= self._max_series:
                        self._dropped += 1
                        continue
                    self._series[key] = added
                    continue
                mine.count += added.count
                mine.errors += added.errors
                mine.sum_ms += added.sum_ms
                mine.buckets += added.buckets

    def observe_drift(
        self, model: str, version: int, feature: str, statistic_name: str, value: float, drifted: bool
    ) -> None:
        """Set the drift gauges of one (model, version, feature, statistic) to its last measurement.

        Args:
            model: model name (``fraud``).
            version: model version number.
            feature: the input feature measured.
            statistic_name: the drift statistic (``psi``, ``ks``...), the ``statistic`` label.
            value: the statistic's value: ``ferry_monitor_drift_score``.
            drifted: whether it crossed its threshold: ``ferry_monitor_drift_detected`` (1 or 0).
        """
        key = (model, str(version), feature, statistic_name)
        with self._lock:
            if key not in self._drift and len(self._drift) >= self._max_series:
                self._dropped += 1
                return
            self._drift[key] = (float(value), bool(drifted))

    def observe_alert(self, kind: str) -> None:
        """Count one alert of ``kind`` (``slo_breach``, ``drift``...): ``ferry_monitor_alerts_total``."""
        with self._lock:
            self._alerts[kind] = self._alerts.get(kind, 0) + 1

    # ---------------------------------------------------------------- exposing

    def collect(self) -> Iterator[Metric]:
        """The Prometheus families, from a snapshot taken under the lock."""
        with self._lock:
            series = [(key, s.count, s.errors, s.sum_ms, s.buckets.copy()) for key, s in self._series.items()]
            drift = list(self._drift.items())
            alerts = list(self._alerts.items())
            accepted, rejected, dropped = self._accepted, self._rejected, self._dropped
        requests = CounterMetricFamily(
            "ferry_monitor_requests", "Requests (aggregated spans) acknowledged, per series.", labels=_SERIES_LABELS
        )
        errors = CounterMetricFamily(
            "ferry_monitor_request_errors", "Requests with an ERROR status, per series.", labels=_SERIES_LABELS
        )
        latency = HistogramMetricFamily(
            "ferry_monitor_request_duration_seconds", "Request durations, per series.", labels=_SERIES_LABELS
        )
        for key, count, error_count, sum_ms, buckets in series:
            labels = [key.service, key.method, key.deployment, key.model, str(key.version), key.route]
            requests.add_metric(labels, count)
            errors.add_metric(labels, error_count)
            cumulative = np.cumsum(buckets)
            latency.add_metric(
                labels, [(le, float(n)) for le, n in zip(_LE, cumulative, strict=True)], sum_value=sum_ms / 1000.0
            )
        spans = CounterMetricFamily("ferry_monitor_spans", "Spans received by Export.", labels=["outcome"])
        spans.add_metric(["accepted"], accepted)
        spans.add_metric(["rejected"], rejected)
        dropped_family = CounterMetricFamily(
            "ferry_monitor_series_dropped", "New series (span or drift) refused: over the series cap.", value=dropped
        )
        score = GaugeMetricFamily(
            "ferry_monitor_drift_score", "Last drift statistic per feature.", labels=_DRIFT_LABELS
        )
        detected = GaugeMetricFamily(
            "ferry_monitor_drift_detected", "1 if the last drift statistic crossed its threshold.", labels=_DRIFT_LABELS
        )
        for labels_tuple, (value, drifted) in drift:
            score.add_metric(list(labels_tuple), value)
            detected.add_metric(list(labels_tuple), 1.0 if drifted else 0.0)
        alert_family = CounterMetricFamily("ferry_monitor_alerts", "Alerts raised, by kind.", labels=["kind"])
        for kind, n in alerts:
            alert_family.add_metric([kind], n)
        yield from (requests, errors, latency, spans, dropped_family, score, detected, alert_family)

    def serve(self, host: str, port: int) -> int:
        """Answer ``GET /metrics`` on ``host:port`` (port 0 = any free one) in a daemon thread; returns the port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop the HTTP server, if serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# ---------------------------------------------------------------- the process's instance

_active: MonitorMetrics | None = None


def activate(metrics: MonitorMetrics | None) -> None:
    """Make ``metrics`` the one :func:`observe_drift` and :func:`observe_alert` record into (``None``: none)."""
    global _active
    _active = metrics


def active() -> MonitorMetrics | None:
    """The metrics of the monitor running in this process, ``None`` when /metrics is off."""
    return _active


def observe_drift(model: str, version: int, feature: str, statistic_name: str, value: float, drifted: bool) -> None:
    """Record a drift measurement in this process's monitor metrics; does nothing when /metrics is off.

    Drift code calls this after each measurement of a feature; see
    :meth:`MonitorMetrics.observe_drift` for the arguments. Prefer the method when an
    instance is at hand (several monitors in one test process each have their own).
    """
    metrics = _active
    if metrics is not None:
        metrics.observe_drift(model, version, feature, statistic_name, value, drifted)


def observe_alert(kind: str) -> None:
    """Count an alert in this process's monitor metrics; does nothing when /metrics is off."""
    metrics = _active
    if metrics is not None:
        metrics.observe_alert(kind)
