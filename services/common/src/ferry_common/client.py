"""Channels to other Ferry services: deadlines, retries, keepalive, auth, tracing.

:func:`create_channel` makes a ``grpc.aio`` channel, :func:`create_sync_channel` a
blocking one with the same options, deadline, token, TLS, retry policy and tracing.
Every unary-response call gets the default deadline (``FERRY_CALL_TIMEOUT_SECONDS``)
unless it sets one; server streams (watches) do not, since they are meant to stay
open. Only idempotent methods (Get/List/Resolve/Read/Download/Watch) are retried,
and only on UNAVAILABLE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from opentelemetry.sdk.trace import TracerProvider

from ferry_common import tracing
from ferry_common.settings import Settings

__all__ = ["channel_credentials", "create_channel", "create_sync_channel", "service_config"]

IDEMPOTENT_PREFIXES = ("Get", "List", "Resolve", "Read", "Download", "Watch")

_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 1),
    # A restarted service is found again within seconds (gRPC's default backoff grows to
    # 120 s, and channels to one address share their connection).
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def service_config(service_names: Sequence[str]) -> str:
    """gRPC service config that retries idempotent methods of these services."""
    pool = descriptor_pool.Default()
    names: list[dict[str, str]] = []
    for full_name in service_names:
        try:
            service = pool.FindServiceByName(full_name)
        except KeyError:
            continue
        names.extend(
            {"service": full_name, "method": method.name}
            for method in service.methods
            if method.name.startswith(IDEMPOTENT_PREFIXES)
        )
    config: dict[str, Any] = {"methodConfig": []}
    if names:
        config["methodConfig"].append(
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return json.dumps(config)


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS credentials when ``FERRY_TLS_CA_FILE`` is set (with a client cert for mTLS)."""
    tls = settings.tls
    if tls.ca_file is None:
        return None
    key = tls.key_file.read_bytes() if tls.key_file else None
    cert = tls.cert_file.read_bytes() if tls.cert_file else None
    return grpc.ssl_channel_credentials(tls.ca_file.read_bytes(), private_key=key, certificate_chain=cert)


class _Defaults:
    """Adds the bearer token, and the default deadline on unary-response calls."""

    def __init__(self, token: str | None, timeout: float) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def _details(self, details: Any, deadline: bool) -> Any:
        metadata = list(details.metadata or ()) + list(self._metadata)
        timeout = details.timeout if details.timeout is not None or not deadline else self._timeout
        return details._replace(metadata=grpc.aio.Metadata(*metadata), timeout=timeout)


# One class per call kind: grpc.aio files an interceptor under the first kind it is an
# instance of, so a single class implementing all four would only see unary calls.
class _UnaryUnaryDefaults(_Defaults, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details, True), request)


class _StreamUnaryDefaults(_Defaults, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(details, True), request_iterator)


class _UnaryStreamDefaults(_Defaults, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details, False), request)


class _StreamStreamDefaults(_Defaults, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(details, False), request_iterator)


def _defaults_interceptors(token: str | None, timeout: float) -> list[Any]:
    kinds = (_UnaryUnaryDefaults, _StreamUnaryDefaults, _UnaryStreamDefaults, _StreamStreamDefaults)
    return [kind(token, timeout) for kind in kinds]


class _SyncCallDetails(
    NamedTuple(
        "_SyncCallDetails",
        [
            ("method", str),
            ("timeout", float | None),
            ("metadata", Any),
            ("credentials", Any),
            ("wait_for_ready", bool | None),
            ("compression", Any),
        ],
    ),
    grpc.ClientCallDetails,
):
    pass


class _SyncDefaultsInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """The blocking twin of :class:`_Defaults` (sync channels accept one interceptor of every kind)."""

    def __init__(self, token: str | None, timeout: float) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def _details(self, details: Any, deadline: bool) -> _SyncCallDetails:
        timeout = details.timeout if details.timeout is not None or not deadline else self._timeout
        return _SyncCallDetails(
            details.method,
            timeout,
            [*(details.metadata or ()), *self._metadata],
            getattr(details, "credentials", None),
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details, True), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details, True), request_iterator)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details, False), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details, False), request_iterator)


def create_channel(
    settings: Settings,
    target_service: str,
    service_names: Sequence[str] = (),
    *,
    tracer_provider: TracerProvider | None = None,
    target: str | None = None,
) -> grpc.aio.Channel:
    """An aio channel to another Ferry service, found through its address setting.

    Args:
        settings: this service's settings (addresses, token, TLS, timeout).
        target_service: ``registry``, ``ingest``...
        service_names: full gRPC service names called, for the retry policy.
        tracer_provider: propagate trace context and record client spans.
        target: override the address (tests).
    """
    address = target or settings.addresses[target_service]
    interceptors: list[Any] = _defaults_interceptors(settings.auth_token, settings.call_timeout_seconds)
    if tracer_provider is not None:
        interceptors.extend(tracing.client_interceptors(tracer_provider))
    options = [*_KEEPALIVE, ("grpc.service_config", service_config(service_names))]
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)


def create_sync_channel(
    settings: Settings,
    target_service: str,
    service_names: Sequence[str] = (),
    *,
    tracer_provider: TracerProvider | None = None,
    target: str | None = None,
) -> grpc.Channel:
    """A blocking channel to another Ferry service; the arguments of :func:`create_channel`.

    With ``tracer_provider``, unary-response calls record client spans and carry the
    trace context; server streams (watches) are not traced, so that their ``cancel()``
    stays reachable (see :class:`_TracedUnlessStreamingBack`).
    """
    address = target or settings.addresses[target_service]
    options = [*_KEEPALIVE, ("grpc.service_config", service_config(service_names))]
    credentials = channel_credentials(settings)
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, credentials, options=options)
    if tracer_provider is not None:
        # OpenTelemetry's blocking interceptor is not a grpc.*ClientInterceptor: it wraps a
        # channel through its own grpcext (grpc.intercept_channel refuses it).
        channel = _TracedUnlessStreamingBack(tracing.trace_sync_channel(channel, tracer_provider), channel)
    return grpc.intercept_channel(channel, _SyncDefaultsInterceptor(settings.auth_token, settings.call_timeout_seconds))


class _TracedUnlessStreamingBack(grpc.Channel):
    """Calls answering with one message go through ``traced``; server streams through ``plain``.

    OpenTelemetry's blocking interceptor hands a server stream back as a plain generator,
    without ``cancel()``: a watch (``ferry_sdk``'s ResumableWatch) could then not be ended
    from another thread. Server streams keep their call object and go untraced.
    """

    def __init__(self, traced: grpc.Channel, plain: grpc.Channel) -> None:
        self._traced = traced
        self._plain = plain

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._traced.unary_unary(*args, **kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._traced.stream_unary(*args, **kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._plain.unary_stream(*args, **kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._plain.stream_stream(*args, **kwargs)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._plain.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._plain.unsubscribe(callback)

    def close(self) -> None:
        self._plain.close()

    def __enter__(self) -> _TracedUnlessStreamingBack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
