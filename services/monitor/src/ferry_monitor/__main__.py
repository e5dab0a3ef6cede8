"""``ferry-monitor``: serve ferry.monitor.v1.MonitorService and OTLP/gRPC trace export on one port.

``main()`` loads settings once; ``build`` opens (and migrates) the database and wires the
stores, the service and both servicers.
"""

from __future__ import annotations

import asyncio

import grpc.aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from ferry.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from ferry_common.logs import get_logger
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings, SettingsError
from ferry_monitor.canary import ServeCanaryControl
from ferry_monitor.config import MonitorConfig
from ferry_monitor.drift_service import DriftService
from ferry_monitor.metrics import MonitorMetrics, activate, active
from ferry_monitor.service import MonitorService
from ferry_monitor.servicer import MonitorServicer, TraceServicer
from ferry_monitor.sketches import SketchCache
from ferry_monitor.slos import SloService
from ferry_monitor.store import SqlAlertStore, SqlInferenceStore, SqlLatencyStore, SqlPolicyStore, open_database
from ferry_monitor.traces import TraceStore
from ferry_monitor.upstream import ServiceUpstream
from ferry_sdk import aio

SERVICE = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"]
TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]
SERVICE_NAME = SERVICE.full_name
_log = get_logger("ferry.monitor")


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    """Open (and migrate) the database and wire the service."""
    config = MonitorConfig.from_settings(settings)
    database = await asyncio.to_thread(open_database, config.database_url, threads=config.db_threads)
    cache = SketchCache()
    latency = SqlLatencyStore(database, cache)
    metrics = MonitorMetrics(max_series=config.metrics_max_series) if config.metrics_address is not None else None
    if metrics is not None:
        activate(metrics)  # metrics.observe_drift / observe_alert record here
    inferences = SqlInferenceStore(database)
    service = MonitorService(
        latency,
        database.runner,
        TraceStore(config.trace_store_bytes, config.max_spans_per_trace),
        cache=cache,
        retention_seconds=config.retention_seconds,
        inferences=inferences,
        inference_retention_seconds=config.inference_retention_seconds,
        max_inferences=config.max_inferences,
        sweep_seconds=config.sweep_seconds,
        metrics=metrics,
    )
    canary = ServeCanaryControl(aio.ServeClient(settings=settings, tracer_provider=tracer_provider))
    slos = SloService(
        SqlAlertStore(database),
        latency,
        database.runner,
        cache,
        canary,
        evaluate_seconds=config.slo_evaluate_seconds,
    )
    upstream = ServiceUpstream(settings, tracer_provider)
    drift = DriftService(
        SqlPolicyStore(database),
        inferences,
        database.runner,
        upstream,
        on_alert=slos.alerts_added,
        evaluate_seconds=config.drift_evaluate_seconds,
        window_seconds=config.drift_window_seconds,
        min_samples=config.drift_min_samples,
        max_samples=config.drift_max_samples,
        min_labels=config.accuracy_min_labels,
    )

    def register(server: grpc.aio.Server) -> None:
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server(MonitorServicer(service, slos, drift), server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceServicer(service), server)

    async def serve_metrics() -> None:
        if metrics is not None and config.metrics_address is not None:
            host, wanted = config.metrics_address
            try:
                port = await asyncio.to_thread(metrics.serve, host, wanted)
            except OSError as error:
                message = f"FERRY_MONITOR_METRICS_ADDRESS: cannot listen on {host}:{wanted}: {error}"
                raise SettingsError(message) from error
            _log.info("prometheus metrics served", address=f"{host}:{port}", path="/metrics")

    async def stop_metrics() -> None:
        if metrics is not None:
            if active() is metrics:
                activate(None)
            await asyncio.to_thread(metrics.close)

    return ServiceDefinition(
        register=register,
        service_names=[SERVICE_NAME, TRACE_SERVICE.full_name],
        on_start=[service.start, slos.start, drift.start, serve_metrics],
        on_drain=[slos.drain],
        on_stop=[
            drift.stop,
            upstream.close,
            slos.stop,
            canary.close,
            service.stop,
            lambda: asyncio.to_thread(database.close),
            stop_metrics,
        ],
    )


def main() -> None:
    run("monitor", build)


if __name__ == "__main__":
    main()
