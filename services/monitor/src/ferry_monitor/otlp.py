"""OTLP trace batches (``ExportTraceServiceRequest``) -> latency deltas and spans to keep.

Which spans feed latency: SERVER and CONSUMER spans (the time a service took to answer a
call or handle a message), and INTERNAL (or unspecified) spans that are roots in their
process (no parent, or a remote one: a batch job's root span). CLIENT and PRODUCER spans,
and internal child spans, only go to the trace store: counting a call once from the
caller and once from the callee would count it twice. The method of a series is the
span's name (``/pkg.Service/Method`` for gRPC spans); the bucket is that of the span's end.

A span is rejected, alone, when it cannot be aggregated or kept truthfully: a trace id
that is not 16 bytes or is all zeros, a span id that is not 8 bytes or is all zeros, a
parent span id of another length, an empty name, no start time, an end before the start,
an end older than the retention window or more than :data:`MAX_FUTURE_SECONDS` ahead of
monitor's clock. The rest of the batch is kept; the response's ``partial_success``
counts the rejected spans and names the first few reasons.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from ferry_monitor.domain import BUCKET_SECONDS, BucketDelta, SeriesKey, StoredSpan

__all__ = ["MAX_ATTRIBUTE_CHARS", "MAX_FUTURE_SECONDS", "DecodedBatch", "decode_batch"]

MAX_FUTURE_SECONDS = 600
# Series key columns hold at most this many characters of an attribute or name.
MAX_ATTRIBUTE_CHARS = 256
_REASONS_KEPT = 5
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_SERVER_KINDS = (trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CONSUMER)
_LOCAL_KINDS = (trace_pb2.Span.SPAN_KIND_INTERNAL, trace_pb2.Span.SPAN_KIND_UNSPECIFIED)
_ERROR = trace_pb2.Status.STATUS_CODE_ERROR
_UNKNOWN_SERVICE = "unknown_service"
_FERRY_KEYS = frozenset(("ferry.deployment", "ferry.model", "ferry.version", "ferry.route"))


@dataclass
class DecodedBatch:
    """What one Export brings.

    Attributes:
        deltas: per (bucket start, series), what the batch adds.
        spans: spans to keep for GetTrace, by trace id.
        accepted: spans accepted (aggregated or only kept).
        rejected: spans rejected.
        reasons: the first few rejection reasons, for ``partial_success.error_message``.
    """

    deltas: dict[tuple[int, SeriesKey], BucketDelta] = field(default_factory=dict)
    spans: dict[bytes, list[StoredSpan]] = field(default_factory=lambda: defaultdict(list))
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < _REASONS_KEPT:
            self.reasons.append(f"{where}: {reason}")

    @property
    def error_message(self) -> str:
        if not self.rejected:
            return ""
        more = self.rejected - len(self.reasons)
        suffix = f"; and {more} more" if more > 0 else ""
        return f"{self.rejected} span(s) rejected: " + "; ".join(self.reasons) + suffix


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a series key is for humans to filter on anyway.
    text = text[:MAX_ATTRIBUTE_CHARS]
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _text(value: common_pb2.AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _clean(value.string_value)
    if kind is None:
        return ""
    return _clean(str(getattr(value, kind)).strip())


def _int(value: common_pb2.AnyValue) -> int:
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "string_value" and value.string_value.isascii() and value.string_value.isdigit():
        return int(value.string_value[:18])
    return 0


def _service_name(resource_spans: trace_pb2.ResourceSpans) -> str:
    for attribute in resource_spans.resource.attributes:
        if attribute.key == "service.name":
            return _text(attribute.value) or _UNKNOWN_SERVICE
    return _UNKNOWN_SERVICE


def _problem(span: trace_pb2.Span, oldest_ns: int, newest_ns: int) -> str | None:
    if len(span.trace_id) != 16 or span.trace_id == _ZERO_TRACE:
        return f"trace_id of {len(span.trace_id)} bytes is not 16 non-zero bytes"
    if len(span.span_id) != 8 or span.span_id == _ZERO_SPAN:
        return f"span_id of {len(span.span_id)} bytes is not 8 non-zero bytes"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return f"parent_span_id of {len(span.parent_span_id)} bytes is neither empty nor 8 bytes"
    if not span.name:
        return "name is empty"
    if span.start_time_unix_nano == 0:
        return "start_time_unix_nano is not set"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "end_time_unix_nano is before start_time_unix_nano"
    if span.end_time_unix_nano < oldest_ns:
        return "ended before the retention window"
    if span.end_time_unix_nano > newest_ns:
        return f"ends more than {MAX_FUTURE_SECONDS} s after monitor's clock"
    return None


def _series(service: str, span: trace_pb2.Span) -> SeriesKey:
    # The hot loop of the receiver: one key lookup per attribute, values read only for ours.
    found: dict[str, common_pb2.AnyValue] = {}
    for attribute in span.attributes:
        if attribute.key in _FERRY_KEYS:
            found[attribute.key] = attribute.value
    if not found:
        return SeriesKey(service, _clean(span.name))
    version = found.get("ferry.version")
    return SeriesKey(
        service,
        _clean(span.name),
        _text(found["ferry.deployment"]) if "ferry.deployment" in found else "",
        _text(found["ferry.model"]) if "ferry.model" in found else "",
        _int(version) if version is not None else 0,
        _text(found["ferry.route"]) if "ferry.route" in found else "",
    )


def decode_batch(
    request: trace_service_pb2.ExportTraceServiceRequest, *, now_ns: int, retention_seconds: int
) -> DecodedBatch:
    """Split an Export request into latency deltas and spans to keep, rejecting bad spans alone."""
    batch = DecodedBatch()
    oldest_ns = now_ns - retention_seconds * 1_000_000_000
    newest_ns = now_ns + MAX_FUTURE_SECONDS * 1_000_000_000
    bucket_ns = BUCKET_SECONDS * 1_000_000_000
    deltas = batch.deltas
    for r, resource_spans in enumerate(request.resource_spans):
        service = _service_name(resource_spans)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                problem = _problem(span, oldest_ns, newest_ns)
                if problem is not None:
                    batch.reject(f"resource_spans[{r}].scope_spans[{s}].spans[{i}]", problem)
                    continue
                batch.accepted += 1
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                data = span.SerializeToString()
                batch.spans[span.trace_id].append(StoredSpan(span.span_id, service, start, data))
                if not _aggregated(span):
                    continue
                # Reading attributes is most of the per-span cost: only spans that carry ours pay it.
                key = _series(service, span) if b"ferry." in data else SeriesKey(service, _clean(span.name))
                slot = (end // bucket_ns * BUCKET_SECONDS, key)
                delta = deltas.get(slot)
                if delta is None:
                    delta = deltas[slot] = BucketDelta()
                delta.add((end - start) / 1e6, span.status.code == _ERROR)
    return batch


def _aggregated(span: trace_pb2.Span) -> bool:
    if span.kind in _SERVER_KINDS:
        return True
    if span.kind not in _LOCAL_KINDS:
        return False
    # OTLP flags: bit 8 says whether bit 9 (the parent is remote) is known.
    return not span.parent_span_id or (bool(span.flags & 0x100) and bool(span.flags & 0x200))
