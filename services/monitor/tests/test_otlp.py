"""Decoding OTLP batches: which spans feed latency, series keys from ferry.* attributes, rejections."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from ferry_monitor.domain import SeriesKey
from ferry_monitor.otlp import decode_batch

NS = 1_000_000_000
NOW = 1_800_000_000 * NS
Span = trace_pb2.Span


def attr(key: str, **value: object) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))  # type: ignore[arg-type]


def span(
    n: int, kind: int, *, parent: bytes = b"", flags: int = 0, attributes: list[common_pb2.KeyValue] | None = None
) -> Span:
    return Span(
        trace_id=b"\x01" * 16,
        span_id=bytes([n]) * 8,
        parent_span_id=parent,
        name=f"op{n}",
        kind=kind,  # type: ignore[arg-type]
        flags=flags,
        start_time_unix_nano=NOW - 3_000_000,
        end_time_unix_nano=NOW,
        attributes=attributes or [],
    )


def request(spans: list[Span], service: str | None = "svc") -> trace_service_pb2.ExportTraceServiceRequest:
    resource = resource_pb2.Resource(attributes=[attr("service.name", string_value=service)] if service else [])
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )


def test_server_spans_and_local_roots_feed_latency_client_and_children_do_not() -> None:
    parent = b"\x09" * 8
    spans = [
        span(1, Span.SPAN_KIND_SERVER, parent=parent),  # counted
        span(2, Span.SPAN_KIND_CONSUMER, parent=parent),  # counted
        span(3, Span.SPAN_KIND_INTERNAL),  # a local root: counted
        span(4, Span.SPAN_KIND_INTERNAL, parent=parent, flags=0x300),  # remote parent: a local root
        span(5, Span.SPAN_KIND_INTERNAL, parent=parent),  # a child: trace only
        span(6, Span.SPAN_KIND_CLIENT),  # never counted
        span(7, Span.SPAN_KIND_PRODUCER, parent=parent),
    ]
    batch = decode_batch(request(spans), now_ns=NOW, retention_seconds=3600)
    assert (batch.accepted, batch.rejected) == (7, 0)
    assert sorted(key.method for _, key in batch.deltas) == ["op1", "op2", "op3", "op4"]
    assert {start for start, _ in batch.deltas} == {NOW // NS}  # NOW is on a 10 s boundary
    assert all(d.count == 1 and d.max_ms == 3.0 for d in batch.deltas.values())
    assert len(batch.spans[b"\x01" * 16]) == 7


def test_series_key_from_serve_attributes_and_unknown_service() -> None:
    attributes = [
        attr("ferry.deployment", string_value="churn"),
        attr("ferry.model", string_value="churn-model"),
        attr("ferry.version", int_value=3),
        attr("ferry.route", string_value="canary\x00"),
        attr("other", bool_value=True),
    ]
    errored = span(1, Span.SPAN_KIND_SERVER, attributes=attributes)
    errored.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    batch = decode_batch(request([errored], service=None), now_ns=NOW, retention_seconds=3600)
    ((_, key), found), *_ = batch.deltas.items()
    assert key == SeriesKey(
        "unknown_service", "op1", "churn", "churn-model", 3, "canary\ufffd"
    )  # PostgreSQL text holds no NUL
    assert (found.count, found.error_count) == (1, 1)


def test_each_bad_span_is_rejected_alone_and_named() -> None:
    bad = [span(i, Span.SPAN_KIND_SERVER) for i in range(1, 9)]
    bad[0].ClearField("trace_id")
    bad[1].parent_span_id = b"\x01\x02"
    bad[2].start_time_unix_nano = 0
    bad[3].end_time_unix_nano = NOW - 4_000_000
    good = span(42, Span.SPAN_KIND_SERVER)
    batch = decode_batch(request([*bad[:4], good]), now_ns=NOW, retention_seconds=3600)
    assert (batch.accepted, batch.rejected) == (1, 4)
    assert [key.method for _, key in batch.deltas] == ["op42"]
    message = batch.error_message
    assert message.startswith("4 span(s) rejected: resource_spans[0].scope_spans[0].spans[0]: trace_id of 0 bytes")
    assert "spans[1]: parent_span_id of 2 bytes" in message
    assert "spans[2]: start_time_unix_nano is not set" in message
    assert "spans[3]: end_time_unix_nano is before start_time_unix_nano" in message

    many = decode_batch(
        request([span(i, Span.SPAN_KIND_SERVER, parent=b"\x01") for i in range(1, 9)]), now_ns=NOW, retention_seconds=60
    )
    assert many.rejected == 8 and many.error_message.endswith("; and 3 more")
