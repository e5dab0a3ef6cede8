"""``ferry-registry``: serve ferry.registry.v1.RegistryService.

``main()`` loads settings once; ``build`` wires the adapters (database, object store)
into the service and the servicer.
"""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.objectstore import open_object_store
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings
from ferry_registry.artifacts import ArtifactStore
from ferry_registry.config import RegistryConfig
from ferry_registry.service import RegistryService
from ferry_registry.servicer import RegistryServicer
from ferry_registry.store import SqlRegistryStore, open_database

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    """Open the database (migrating it) and the object store, and wire the service."""
    config = RegistryConfig.from_settings(settings)
    artifacts = ArtifactStore(open_object_store(settings), config.max_artifact_bytes)
    await artifacts.check()
    database = await asyncio.to_thread(open_database, config)
    service = RegistryService(
        SqlRegistryStore(database),
        database.runner,
        artifacts,
        resolve_cache=config.resolve_cache_enabled,
        watch_poll_seconds=config.watch_poll_ms / 1000,
    )
    servicer = RegistryServicer(service)
    return ServiceDefinition(
        register=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
        on_start=[service.start],
        on_drain=[service.drain],
        on_stop=[service.stop, lambda: asyncio.to_thread(database.close)],
    )


def main() -> None:
    run("registry", build)


if __name__ == "__main__":
    main()
