"""``ferry-ingest``: serve ferry.ingest.v1.IngestService."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider

from ferry.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from ferry_common.objectstore import open_object_store
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings
from ferry_ingest.config import IngestConfig
from ferry_ingest.memory import bound_receive_window, keep_pandas_out, tune_allocators
from ferry_ingest.service import IngestService
from ferry_ingest.servicer import IngestServicer
from ferry_ingest.store.sql import SqlDatasetStore, open_database
from ferry_ingest.workspace import Workspace
from ferry_ingest.writer import recover_pending

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    """Wire the object store, the metadata database and the service.

    Raises:
        FerryError: the object store (endpoint, bucket, credentials) or the database
            is unusable; the message says which.
    """
    config = IngestConfig.from_settings(settings)
    objects = open_object_store(settings)
    await asyncio.to_thread(objects.check)
    database = await asyncio.to_thread(open_database, settings.resolved_database_url())
    store = SqlDatasetStore(database)
    # Objects of commits a crash interrupted (see ferry_ingest.writer).
    await database.runner.write(recover_pending, store, objects)
    workspace = Workspace(config.tmp_dir)
    await asyncio.to_thread(workspace.open)
    servicer = IngestServicer(IngestService(store, database.runner, objects, config, settings.s3, workspace))
    return ServiceDefinition(
        register=lambda server: ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
        on_stop=[lambda: asyncio.to_thread(store.close), workspace.close],
    )


def main() -> None:
    keep_pandas_out()
    tune_allocators()
    bound_receive_window()
    run("ingest", build)


if __name__ == "__main__":
    main()
