"""One server bootstrap for every Ferry service.

``grpc.aio`` server with interceptors (tracing, logging + errors, auth), the standard
health service, reflection, TLS/mTLS, and a SIGTERM/SIGINT drain: stop accepting,
finish in-flight calls within the grace period, flush traces, then close the
service's resources (databases, subprocesses).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider

from ferry_common import tracing
from ferry_common.auth import TokenTable
from ferry_common.errors import FerryError
from ferry_common.interceptors import AuthInterceptor, CallInterceptor
from ferry_common.logs import configure_logging, get_logger
from ferry_common.settings import Settings, SettingsError, load_settings

__all__ = ["RunningServer", "ServiceDefinition", "run", "serve_until_signal", "start_server"]

_log = get_logger("ferry.server")

# 64 MiB: artifact and dataset chunks are far smaller, but model metadata with a
# large signature or a batch of inference records must not hit the 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Cleanup = Callable[[], Awaitable[None] | None]


@dataclass
class ServiceDefinition:
    """What a service contributes to the shared server.

    Attributes:
        register: adds the servicers to the server (the generated ``add_*_to_server``).
        service_names: full names of the services registered, for health and reflection.
        on_stop: run after the drain, in order (close databases, stop subprocesses).
        on_start: run once the server is listening (start background tasks).
        on_drain: run when the drain begins, before waiting for in-flight calls (end
            long-lived streams such as watches, which would otherwise hold the drain
            for the whole grace period).
    """

    register: Callable[[grpc.aio.Server], None]
    service_names: Sequence[str]
    on_stop: list[Cleanup] = field(default_factory=list)
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_drain: list[Cleanup] = field(default_factory=list)


Build = Callable[[Settings, TracerProvider], Awaitable[ServiceDefinition]]


def unimplemented(*services: tuple[Any, ServiceDescriptor]) -> ServiceDefinition:
    """A definition serving generated base servicers (every RPC answers UNIMPLEMENTED).

    Each entry is ``(<x>_pb2_grpc module, service descriptor)``: what a service registers
    before its issue fills its RPCs, so that it boots, reports health and answers with a
    clean status from the first day.
    """

    def register(server: grpc.aio.Server) -> None:
        for module, descriptor in services:
            servicer = getattr(module, f"{descriptor.name}Servicer")()
            getattr(module, f"add_{descriptor.name}Servicer_to_server")(servicer, server)

    return ServiceDefinition(register=register, service_names=[d.full_name for _, d in services])


@dataclass
class RunningServer:
    """A started server; :meth:`stop` drains it."""

    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer (untyped)
    definition: ServiceDefinition
    tracer_provider: TracerProvider
    service_names: Sequence[str]

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight calls finish within ``grace``, clean up."""
        await self.health.enter_graceful_shutdown()
        # Stop accepting first, then end long-lived streams, so that a watcher that
        # reconnects at once is refused instead of opening a stream the drain waits on.
        stopping = asyncio.ensure_future(self.server.stop(grace))
        await asyncio.sleep(0)
        for hook in self.definition.on_drain:
            result = hook()
            if inspect.isawaitable(result):
                await result
        await stopping
        for cleanup in self.definition.on_stop:
            result = cleanup()
            if inspect.isawaitable(result):
                await result
        # Flushes queued spans; the exporter's short timeout bounds this.
        await asyncio.to_thread(self.tracer_provider.shutdown)


def _server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    tls = settings.tls
    if tls.cert_file is None or tls.key_file is None:
        return None
    root = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


async def start_server(
    settings: Settings,
    build: Build,
    *,
    address: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> RunningServer:
    """Build the service and start serving on ``address`` (default: its setting).

    ``address`` may end in ``:0`` to take a free port; the port is returned.
    """
    provider = tracer_provider or tracing.configure_tracing(settings)
    interceptors: list[Any] = [tracing.server_interceptor(provider), CallInterceptor()]
    if settings.auth_tokens_file is not None:
        interceptors.append(AuthInterceptor(TokenTable.from_file(settings.auth_tokens_file)))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.so_reuseport", 0),
        ],
    )
    definition = await build(settings, provider)
    definition.register(server)

    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # grpcio-health reports the server ("") SERVING from the start: not before the on_start
    # hooks ran (serve re-applies its deployments there), or a caller would be told too early.
    for name in ("", *definition.service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    names = [*definition.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)

    target = address or settings.address
    credentials = _server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(target)
    else:
        port = server.add_secure_port(target, credentials)
    if port == 0:
        raise SettingsError(f"FERRY_{settings.service.upper()}_ADDRESS: cannot listen on {target!r}")
    await server.start()
    for hook in definition.on_start:
        await hook()
    for name in ("", *definition.service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _log.info(
        "serving", address=target, port=port, tls=credentials is not None, services=list(definition.service_names)
    )
    return RunningServer(server, port, health_servicer, definition, provider, names)


async def serve_until_signal(settings: Settings, build: Build) -> None:
    """Serve until SIGTERM or SIGINT, then drain within the grace period."""
    running = await start_server(settings, build)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    _log.info("draining", grace_seconds=settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)
    _log.info("stopped")


def run(service: str, build: Build) -> None:
    """The body of every ``ferry-<service>`` console script."""
    try:
        settings = load_settings(service)
    except SettingsError as exc:
        print(f"ferry-{service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service, settings.log_level, settings.log_format)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(serve_until_signal(settings, build))
    except (SettingsError, FerryError) as exc:
        # A backend that is misconfigured at start (wrong S3 endpoint, bucket or
        # credentials, unreachable database) fails fast with a message naming it.
        print(f"ferry-{service}: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
