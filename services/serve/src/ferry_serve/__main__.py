"""``ferry-serve``: ferry.serve.v1.ServeService and Triton's inference protocol on one port.

``build`` opens serve's database, starts the embedded Triton (or watches the external one
at ``FERRY_SERVE_TRITON_URL``), and wires the deployer, the data-plane gateway and the
control-plane servicer. Once listening it re-applies every stored deployment (Triton holds
nothing after a start), then follows the registry's alias events and the other replicas'
changes in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import metadata

from opentelemetry.sdk.trace import TracerProvider
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ferry.serve.v1 import serve_pb2, serve_pb2_grpc
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings
from ferry_sdk import aio
from ferry_serve.config import ServeConfig
from ferry_serve.deployer import Deployer
from ferry_serve.gateway import Gateway
from ferry_serve.routing import Router
from ferry_serve.sampling import Sampler, Shadows
from ferry_serve.servicer import ServeServicer
from ferry_serve.store import SqlServeStore, open_database
from ferry_serve.triton import EmbeddedTriton, ExternalTriton, TritonControl, TritonServer, remove_staging

SERVICE = serve_pb2.DESCRIPTOR.services_by_name["ServeService"]
INFERENCE_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME = SERVICE.full_name


def _version() -> str:
    try:
        return metadata.version("ferry-serve")
    except metadata.PackageNotFoundError:
        return "unknown"


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    """Open the database, start (or find) Triton and wire the control and data planes."""
    config = ServeConfig.from_settings(settings)
    database = await asyncio.to_thread(open_database, config.database_url, threads=config.db_threads)
    store = SqlServeStore(database)
    config.model_repository.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(remove_staging, config.model_repository)
    triton: TritonServer
    if config.triton_url:
        triton = ExternalTriton(config.triton_url, ready_timeout=config.triton_ready_seconds)
    else:
        log_dir = settings.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        triton = EmbeddedTriton(
            settings.state_dir / "triton",
            config.model_repository,
            log_path=log_dir / "tritonserver.log",
            ready_timeout=config.triton_ready_seconds,
        )
    try:
        await triton.start()
    except BaseException:
        await asyncio.to_thread(database.close)
        raise

    router = Router()
    registry = aio.RegistryClient(settings=settings, tracer_provider=tracer_provider)
    monitor = aio.MonitorClient(settings=settings, tracer_provider=tracer_provider)
    control = TritonControl(triton.grpc_url)
    deployer = Deployer(
        store,
        database.runner,
        registry,
        control,
        router,
        repository=config.model_repository,
        backend=config.triton_backend,
        drain_seconds=config.drain_seconds,
        retry_max_seconds=config.retry_max_ms / 1000,
    )
    triton.on_restart = deployer.reload_all
    sampler = Sampler(monitor, config.sample_queue)
    shadows = Shadows(config.shadow_concurrency, sampler)
    gateway = Gateway(router, sampler, shadows, max_request_bytes=config.max_request_bytes, server_version=_version())
    servicer = ServeServicer(store, database.runner, deployer, router)
    followers: list[asyncio.Task[None]] = []

    async def start() -> None:
        gateway.connect(triton.grpc_url)
        await sampler.start()
        # Read both revisions before re-applying: whatever changes after is followed.
        store_revision = await database.runner.read(store.current_revision)
        alias_revision = await database.runner.read(store.alias_revision)
        await deployer.resume()

        async def remember(revision: int) -> None:
            await database.runner.write(store.record_alias_revision, revision)

        followers.append(asyncio.ensure_future(deployer.follow_store(config.poll_ms / 1000, store_revision)))
        followers.append(asyncio.ensure_future(deployer.follow_aliases(alias_revision, remember)))

    async def drain() -> None:
        await deployer.stop()
        for task in followers:
            task.cancel()
        for task in followers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def register(server: object) -> None:
        serve_pb2_grpc.add_ServeServiceServicer_to_server(servicer, server)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(gateway, server)

    return ServiceDefinition(
        register=register,
        service_names=[SERVICE_NAME, INFERENCE_SERVICE.full_name],
        on_start=[start],
        on_drain=[drain],
        on_stop=[
            shadows.stop,
            sampler.stop,
            gateway.close,
            control.close,
            triton.stop,
            registry.close,
            monitor.close,
            lambda: asyncio.to_thread(database.close),
        ],
    )


def main() -> None:
    run("serve", build)


if __name__ == "__main__":
    main()
