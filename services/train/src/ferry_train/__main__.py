"""``ferry-train``: serve ferry.train.v1.TrainService.

``main()`` loads settings once; ``build`` wires the database, the service, the servicer
and the scheduler that runs queued jobs in worker processes.
"""

from __future__ import annotations

import asyncio
import os

from opentelemetry.sdk.trace import TracerProvider

from ferry.train.v1 import train_pb2, train_pb2_grpc
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings
from ferry_sdk.aio import IngestClient
from ferry_train.config import TrainConfig
from ferry_train.manifest import ManifestSettings
from ferry_train.scheduler import Scheduler, worker_environment
from ferry_train.service import TrainService
from ferry_train.servicer import TrainServicer
from ferry_train.store import SqlTrainStore, open_database

SERVICE = train_pb2.DESCRIPTOR.services_by_name["TrainService"]
SERVICE_NAME = SERVICE.full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    """Open (and migrate) the database and wire the service and its scheduler."""
    config = TrainConfig.from_settings(settings)
    database = await asyncio.to_thread(open_database, config)
    store = SqlTrainStore(database)
    # Create checks a job's data through ingest before storing it (FERRY_INGEST_ADDRESS).
    ingest = IngestClient(settings=settings, tracer_provider=tracer_provider)
    scheduler = Scheduler(
        store,
        database.runner,
        max_concurrent=config.max_concurrent_jobs,
        log_dir=settings.state_dir / "train" / "logs",
        environment=worker_environment(settings, config, os.environ),
        poll_seconds=config.poll_ms / 1000,
        cancel_grace_seconds=config.cancel_grace_seconds,
    )
    service = TrainService(
        store,
        database.runner,
        poll_seconds=config.poll_ms / 1000,
        on_change=scheduler.wake,
        manifest_settings=ManifestSettings.from_settings(settings),
        datasets=ingest,
    )
    servicer = TrainServicer(service)
    return ServiceDefinition(
        register=lambda server: train_pb2_grpc.add_TrainServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
        on_start=[service.start, scheduler.start],
        on_drain=[service.drain],
        on_stop=[scheduler.stop, ingest.close, lambda: asyncio.to_thread(database.close)],
    )


def main() -> None:
    run("train", build)


if __name__ == "__main__":
    main()
