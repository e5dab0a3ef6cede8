"""``ferry-ingest``: serve ferry.ingest.v1.IngestService."""

from __future__ import annotations

from ferry.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings
from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    # RPCs answer UNIMPLEMENTED until the ingest issue fills them.
    servicer = ingest_pb2_grpc.IngestServiceServicer()
    return ServiceDefinition(
        register=lambda server: ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
    )


def main() -> None:
    run("ingest", build)


if __name__ == "__main__":
    main()
