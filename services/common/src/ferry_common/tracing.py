"""OpenTelemetry: a tracer provider exporting OTLP/gRPC, and the grpc interceptors.

The default batch queue (2048 spans) drops spans in a burst, so it is sized up; the
exporter gets a short timeout so that shutdown never hangs when monitor is down.
Health checks and monitor's own ``TraceService/Export`` are never traced, so counts
stay exact.
"""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    client_interceptor,
    filters,
    grpcext,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ferry_common.settings import Settings

__all__ = [
    "TRACE_EXPORT_SERVICE",
    "client_interceptors",
    "configure_tracing",
    "server_interceptor",
    "trace_sync_channel",
]

TRACE_EXPORT_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
MAX_QUEUE_SIZE = 65_536
EXPORT_TIMEOUT_SECONDS = 2.0

_UNTRACED = filters.negate(
    filters.any_of(
        filters.health_check(),
        filters.service_name(TRACE_EXPORT_SERVICE),
        filters.service_prefix("grpc.reflection"),
    )
)


def configure_tracing(settings: Settings) -> TracerProvider:
    """A tracer provider for this service; export is off when no endpoint is set."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"ferry-{settings.service}"}))
    if settings.otlp_endpoint:
        headers: dict[str, str] = {}
        if settings.auth_token:
            headers["authorization"] = f"Bearer {settings.auth_token}"
        credentials: grpc.ChannelCredentials | None = None
        if settings.tls.ca_file is not None:
            credentials = grpc.ssl_channel_credentials(settings.tls.ca_file.read_bytes())
        exporter = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint,
            insecure=credentials is None,
            credentials=credentials,
            headers=headers or None,
            timeout=int(EXPORT_TIMEOUT_SECONDS),
        )
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=MAX_QUEUE_SIZE,
                max_export_batch_size=512,
                schedule_delay_millis=500,
                export_timeout_millis=int(EXPORT_TIMEOUT_SECONDS * 1000),
            )
        )
    return provider


def server_interceptor(provider: TracerProvider) -> Any:
    return aio_server_interceptor(tracer_provider=provider, filter_=_UNTRACED)  # type: ignore[no-untyped-call]


def client_interceptors(provider: TracerProvider) -> list[Any]:
    interceptors: list[Any] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=_UNTRACED
    )
    return interceptors


def trace_sync_channel(channel: grpc.Channel, provider: TracerProvider) -> grpc.Channel:
    """``channel`` with client spans and trace-context propagation (``ferry_common.client.create_sync_channel``)."""
    interceptor = client_interceptor(tracer_provider=provider, filter_=_UNTRACED)  # type: ignore[no-untyped-call]
    traced: grpc.Channel = grpcext.intercept_channel(channel, interceptor)  # type: ignore[no-untyped-call]
    return traced
