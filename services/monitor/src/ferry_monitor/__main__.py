"""``ferry-monitor``: serve ferry.monitor.v1.MonitorService and OTLP/gRPC trace export."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from ferry.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from ferry_common.server import ServiceDefinition, run, unimplemented
from ferry_common.settings import Settings

SERVICE = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"]
TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]
SERVICE_NAME = SERVICE.full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    # RPCs answer UNIMPLEMENTED until the monitor issue fills them.
    return unimplemented((monitor_pb2_grpc, SERVICE), (trace_service_pb2_grpc, TRACE_SERVICE))


def main() -> None:
    run("monitor", build)


if __name__ == "__main__":
    main()
