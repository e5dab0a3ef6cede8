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
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings
from ferry_monitor.canary import ServeCanaryControl
from ferry_monitor.config import MonitorConfig
from ferry_monitor.service import MonitorService
from ferry_monitor.servicer import MonitorServicer, TraceServicer
from ferry_monitor.sketches import SketchCache
from ferry_monitor.slos import SloService
from ferry_monitor.store import SqlAlertStore, SqlInferenceStore, SqlLatencyStore, open_database
from ferry_monitor.traces import TraceStore
from ferry_sdk import aio

SERVICE = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"]
TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]
SERVICE_NAME = SERVICE.full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    """Open (and migrate) the database and wire the service."""
    config = MonitorConfig.from_settings(settings)
    database = await asyncio.to_thread(open_database, config.database_url, threads=config.db_threads)
    cache = SketchCache()
    latency = SqlLatencyStore(database, cache)
    service = MonitorService(
        latency,
        database.runner,
        TraceStore(config.trace_store_bytes, config.max_spans_per_trace),
        cache=cache,
        retention_seconds=config.retention_seconds,
        inferences=SqlInferenceStore(database),
        inference_retention_seconds=config.inference_retention_seconds,
        max_inferences=config.max_inferences,
        sweep_seconds=config.sweep_seconds,
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

    def register(server: grpc.aio.Server) -> None:
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server(MonitorServicer(service, slos), server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceServicer(service), server)

    return ServiceDefinition(
        register=register,
        service_names=[SERVICE_NAME, TRACE_SERVICE.full_name],
        on_start=[service.start, slos.start],
        on_drain=[slos.drain],
        on_stop=[slos.stop, canary.close, service.stop, lambda: asyncio.to_thread(database.close)],
    )


def main() -> None:
    run("monitor", build)


if __name__ == "__main__":
    main()
