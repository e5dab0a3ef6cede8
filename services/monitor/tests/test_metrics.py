"""Prometheus /metrics of a real monitor process, fed by the OpenTelemetry SDK's OTLPSpanExporter.

The scrape is parsed by prometheus_client's own parser; counts must equal what was sent,
and every histogram's buckets must be cumulative and agree with its count.
"""

from __future__ import annotations

import bisect
import pathlib
import socket
import time
import urllib.request
from collections import Counter

import numpy as np
import pytest
from opentelemetry import trace
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ferry_common.process import ServiceProcess, SpawnError, free_port
from ferry_common.settings import SettingsError, load_settings
from ferry_monitor import metrics as monitor_metrics
from ferry_monitor.config import MonitorConfig
from ferry_monitor.domain import BucketDelta, SeriesKey
from ferry_monitor.metrics import LATENCY_BUCKETS_SECONDS, METRIC_NAMES, MonitorMetrics, parse_metrics_address
from ferry_monitor.otlp import DecodedBatch
from ferry_monitor.testing import emit_spans, exporting_provider
from ferry_sdk import spawn_and_wait

NS = 1_000_000_000
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def start_monitor(state: pathlib.Path, metrics_address: str) -> ServiceProcess:
    env = {
        "FERRY_STATE_DIR": str(state),
        "OTEL_TRACES_EXPORTER": "none",
        "FERRY_LOG_LEVEL": "warning",
        "FERRY_MONITOR_METRICS_ADDRESS": metrics_address,
    }
    return spawn_and_wait("monitor", env=env, cwd=state, log_path=state / "monitor.log")


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        assert response.status == 200
        text: str = response.read().decode()
        return text


def samples(text: str) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, labels) -> value), through prometheus_client's parser."""
    types: dict[str, str] = {}
    values: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return types, values


def series_labels(
    deployment: str, version: int, route: str, method: str = "/ferry.serve.v1.ServeService/Predict"
) -> dict[str, str]:
    return {
        "service": "ferry-serve",
        "method": method,
        "deployment": deployment,
        "model": "fraud",
        "version": str(version),
        "route": route,
    }


def expected_buckets(durations_ns: list[int]) -> list[int]:
    """Cumulative count per ``le`` bound (then +Inf), computed independently of monitor."""
    bounds_ns = [round(bound * NS) for bound in LATENCY_BUCKETS_SECONDS]
    per_bucket = Counter(bisect.bisect_left(bounds_ns, duration) for duration in durations_ns)
    return [int(n) for n in np.cumsum([per_bucket.get(i, 0) for i in range(len(bounds_ns) + 1)])]


def le_text(bound: float) -> str:
    return f"{bound:g}"


@pytest.mark.slow
def test_scrape_counts_what_the_otlp_exporter_sent(tmp_path: pathlib.Path) -> None:
    metrics_address = f"127.0.0.1:{free_port()}"
    rng = np.random.default_rng(7)
    # Durations kept off the bucket bounds by >= 0.1 ms, so float rounding cannot move a span.
    sent = {
        ("d-primary", 3, "primary"): rng.integers(200_000, 3 * NS, 900).tolist(),
        ("d-primary", 4, "canary"): rng.integers(200_000, 80_000_000, 300).tolist(),
        ("d-shadow", 4, "shadow"): rng.integers(200_000, 50_000_000, 50).tolist(),
    }
    bounds_ns = [round(bound * NS) for bound in LATENCY_BUCKETS_SECONDS]
    for durations in sent.values():
        durations[:] = [d if min(abs(d - b) for b in bounds_ns) > 100_000 else d + 200_000 for d in durations]
    errors = {key: (rng.random(len(durations)) < 0.1).tolist() for key, durations in sent.items()}
    with start_monitor(tmp_path, metrics_address) as monitor:
        # Before any span: the families are there, empty or zero.
        types, values = samples(scrape(metrics_address))
        assert types == METRIC_NAMES
        assert values[("ferry_monitor_spans_total", frozenset({("outcome", "accepted")}))] == 0

        provider = exporting_provider(monitor.address, "ferry-serve")
        now = time.time_ns()
        for (deployment, version, route), durations in sent.items():
            attributes = {
                "ferry.deployment": deployment,
                "ferry.model": "fraud",
                "ferry.version": version,
                "ferry.route": route,
            }
            emit_spans(
                provider,
                durations,
                name="/ferry.serve.v1.ServeService/Predict",
                end_ns=now,
                attributes=attributes,
                errors=errors[(deployment, version, route)],
            )
        # Client spans are kept for traces only; spans older than the retention are rejected.
        emit_spans(provider, [1_000_000] * 5, name="outbound", kind=trace.SpanKind.CLIENT, end_ns=now)
        emit_spans(provider, [1_000_000] * 7, name="stale", end_ns=now - 3 * 86_400 * NS)
        assert provider.force_flush(60_000)
        provider.shutdown()

        types, values = samples(scrape(metrics_address))

    assert types == METRIC_NAMES
    total = sum(len(d) for d in sent.values())
    assert values[("ferry_monitor_spans_total", frozenset({("outcome", "accepted")}))] == total + 5
    assert values[("ferry_monitor_spans_total", frozenset({("outcome", "rejected")}))] == 7
    assert values[("ferry_monitor_series_dropped_total", frozenset())] == 0
    exported = {labels for name, labels in values if name == "ferry_monitor_requests_total"}
    assert len(exported) == len(sent)  # the client spans form no series
    for (deployment, version, route), durations in sent.items():
        labels = series_labels(deployment, version, route)
        key = frozenset(labels.items())
        assert key in exported
        assert values[("ferry_monitor_requests_total", key)] == len(durations)
        assert values[("ferry_monitor_request_errors_total", key)] == sum(errors[(deployment, version, route)])

        cumulative = [
            values[("ferry_monitor_request_duration_seconds_bucket", frozenset({**labels, "le": le_text(b)}.items()))]
            for b in LATENCY_BUCKETS_SECONDS
        ]
        cumulative.append(
            values[("ferry_monitor_request_duration_seconds_bucket", frozenset({**labels, "le": "+Inf"}.items()))]
        )
        assert cumulative == sorted(cumulative)  # cumulative: never decreasing
        assert cumulative[-1] == values[("ferry_monitor_request_duration_seconds_count", key)] == len(durations)
        assert cumulative == expected_buckets(durations)
        assert values[("ferry_monitor_request_duration_seconds_sum", key)] == pytest.approx(
            sum(durations) / NS, rel=1e-6
        )


def test_batch_counts_and_drift_gauges_in_a_registry_of_their_own() -> None:
    first, second = MonitorMetrics(), MonitorMetrics(max_series=1)
    batch = DecodedBatch(accepted=4)
    delta = BucketDelta()
    for duration_ms, error in ((0.5, False), (2.0, True), (40.0, False), (70_000.0, True)):
        delta.add(duration_ms, error)
    batch.deltas[(0, SeriesKey("svc", "/a"))] = delta
    batch.deltas[(10, SeriesKey("svc", "/a"))] = delta  # two buckets of one series add up
    batch.deltas[(10, SeriesKey("svc", "/b"))] = delta
    first.add(first.count(batch))
    second.add(second.count(batch))  # only one series fits
    first.observe_drift("fraud", 2, "amount", "psi", 0.31, True)
    first.observe_drift("fraud", 2, "amount", "psi", 0.05, False)  # the last measurement wins
    first.observe_alert("slo_breach")

    _, values = samples(generate_latest(first.registry).decode())
    a = frozenset(dict(series_labels("", 0, "", "/a"), service="svc", model="").items())
    assert values[("ferry_monitor_requests_total", a)] == 8
    assert values[("ferry_monitor_request_errors_total", a)] == 4
    assert values[("ferry_monitor_request_duration_seconds_bucket", a | {("le", "0.001")})] == 2
    assert values[("ferry_monitor_request_duration_seconds_bucket", a | {("le", "60")})] == 6
    assert values[("ferry_monitor_request_duration_seconds_bucket", a | {("le", "+Inf")})] == 8
    drift = frozenset({("model", "fraud"), ("version", "2"), ("feature", "amount"), ("statistic", "psi")})
    assert values[("ferry_monitor_drift_score", drift)] == 0.05
    assert values[("ferry_monitor_drift_detected", drift)] == 0
    assert values[("ferry_monitor_alerts_total", frozenset({("kind", "slo_breach")}))] == 1

    _, values = samples(generate_latest(second.registry).decode())
    assert values[("ferry_monitor_series_dropped_total", frozenset())] == 1
    assert sum(1 for name, _ in values if name == "ferry_monitor_requests_total") == 1
    assert not any(name.startswith("ferry_monitor_drift") for name, _ in values)  # the other registry's


def test_module_level_observe_drift_records_into_the_active_metrics() -> None:
    metrics = MonitorMetrics()
    monitor_metrics.observe_drift("m", 1, "x", "ks", 0.2, False)  # none active: ignored
    monitor_metrics.activate(metrics)
    try:
        monitor_metrics.observe_drift("m", 1, "x", "ks", 0.4, True)
        monitor_metrics.observe_alert("drift")
    finally:
        monitor_metrics.activate(None)
    _, values = samples(generate_latest(metrics.registry).decode())
    labels = frozenset({("model", "m"), ("version", "1"), ("feature", "x"), ("statistic", "ks")})
    assert values[("ferry_monitor_drift_score", labels)] == 0.4
    assert values[("ferry_monitor_drift_detected", labels)] == 1
    assert values[("ferry_monitor_alerts_total", frozenset({("kind", "drift")}))] == 1


def test_metrics_address_setting() -> None:
    assert MonitorConfig.from_settings(load_settings("monitor", {})).metrics_address is None  # off by default
    on = load_settings("monitor", {"FERRY_MONITOR_METRICS_ADDRESS": "127.0.0.1:9464"})
    assert MonitorConfig.from_settings(on).metrics_address == ("127.0.0.1", 9464)
    assert parse_metrics_address("K", ":9464") == ("0.0.0.0", 9464)
    assert parse_metrics_address("K", "[::1]:9464") == ("::1", 9464)
    assert parse_metrics_address("K", " ") is None
    for bad in ("9464", "host:99999", "a b:1", "http://x:1"):
        with pytest.raises(SettingsError, match=r"FERRY_MONITOR_METRICS_ADDRESS: .* host:port"):
            parse_metrics_address("FERRY_MONITOR_METRICS_ADDRESS", bad)


@pytest.mark.slow
def test_a_busy_metrics_port_fails_startup_naming_the_variable(tmp_path: pathlib.Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(SpawnError):
            start_monitor(tmp_path, address).stop()
    log = (tmp_path / "monitor.log").read_text()
    assert f"FERRY_MONITOR_METRICS_ADDRESS: cannot listen on {address}" in log, log
