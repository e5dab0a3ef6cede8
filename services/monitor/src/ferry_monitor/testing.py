"""Test helpers: the OpenTelemetry SDK's own OTLP exporter aimed at a monitor, and spans of known durations.

Tests, the benchmark and the demo drive monitor through these, exactly as any service's
tracer would: nothing here talks to monitor except ``OTLPSpanExporter``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["emit_spans", "exporting_provider"]


def exporting_provider(target: str, service_name: str, *, queue: int = 65_536) -> TracerProvider:
    """A tracer provider exporting to ``target`` through ``OTLPSpanExporter`` (gRPC, insecure).

    The queue is sized for bursts: the SDK's default (2,048) drops spans.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=target, insecure=True, timeout=30)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=queue, max_export_batch_size=512, schedule_delay_millis=50)
    )
    return provider


def emit_spans(
    provider: TracerProvider,
    durations_ns: Iterable[int],
    *,
    name: str = "/test.v1.TestService/Call",
    end_ns: int | None = None,
    attributes: Mapping[str, Any] | None = None,
    errors: Iterable[bool] | None = None,
    kind: trace.SpanKind = trace.SpanKind.SERVER,
) -> int:
    """End one root span per duration at ``end_ns`` (default now); ``errors`` marks ERROR statuses."""
    tracer = provider.get_tracer("ferry.monitor.testing")
    end = end_ns if end_ns is not None else time.time_ns()
    flags = iter(errors) if errors is not None else None
    emitted = 0
    for duration in durations_ns:
        span = tracer.start_span(name, kind=kind, start_time=end - duration, attributes=dict(attributes or {}))
        if flags is not None and next(flags):
            span.set_status(trace.Status(trace.StatusCode.ERROR, "failed"))
        span.end(end_time=end)
        emitted += 1
    return emitted
