"""``ferry-registry``: serve ferry.registry.v1.RegistryService."""

from __future__ import annotations

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings
from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    # RPCs answer UNIMPLEMENTED until the registry issue fills them.
    servicer = registry_pb2_grpc.RegistryServiceServicer()
    return ServiceDefinition(
        register=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
    )


def main() -> None:
    run("registry", build)


if __name__ == "__main__":
    main()
