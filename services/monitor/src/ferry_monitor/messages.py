"""Proto <-> domain for ``ferry.monitor.v1``: form checks of requests, results as messages.

Each check raises :class:`~ferry_common.errors.InvalidArgument` naming the request field
(``filter.version``, ``window.end_time``, ``step``, ``trace_id``, ``records[3].route``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry_common import fields
from ferry_common.errors import InvalidArgument, ResourceExhausted
from ferry_common.names import parse_name, parse_version_name, shorten, validate_id
from ferry_monitor.domain import BUCKET_SECONDS, LatencyStats, SpanFilter, StoredSpan
from ferry_monitor.inferences import Feedback, InferenceRecord, Performance
from ferry_monitor.otlp import MAX_ATTRIBUTE_CHARS
from ferry_monitor.service import Window
from ferry_monitor.sketches import RELATIVE_ACCURACY

__all__ = [
    "MAX_RECORDS",
    "ROUTES",
    "parse_feedback",
    "parse_filter",
    "parse_records",
    "parse_route",
    "parse_since",
    "parse_step",
    "parse_trace_id",
    "parse_window",
    "performance_to_proto",
    "point_to_proto",
    "stats_to_proto",
    "trace_to_proto",
]

ROUTES = ("primary", "canary", "shadow")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# Times are kept as nanoseconds since the epoch in 64-bit columns: 1970-01-01 to 2262-04-11.
_MIN_SECONDS, _MAX_SECONDS = 0, (2**63 - 1) // 1_000_000_000 - 1
_NS = 1_000_000_000


def _text(field: str, value: str) -> str:
    if len(value) > MAX_ATTRIBUTE_CHARS or any(ord(c) < 32 for c in value):
        raise InvalidArgument(
            f"{field}: {shorten(value)} must be at most {MAX_ATTRIBUTE_CHARS} characters without control characters",
            field=field,
        )
    return value


def parse_filter(message: pb.SpanFilter, field: str = "filter") -> SpanFilter:
    """A span filter; ids follow the id rule, the route is primary, canary or shadow."""
    if message.version < 0:
        raise InvalidArgument(f"{field}.version: {message.version} must not be negative", field=f"{field}.version")
    if message.route and message.route not in ROUTES:
        raise InvalidArgument(
            f"{field}.route: {shorten(message.route)} is not one of {', '.join(ROUTES)}", field=f"{field}.route"
        )
    return SpanFilter(
        service=_text(f"{field}.service", message.service),
        method=_text(f"{field}.method", message.method),
        deployment=validate_id(f"{field}.deployment", message.deployment) if message.deployment else "",
        model=validate_id(f"{field}.model", message.model) if message.model else "",
        version=message.version,
        route=message.route,
    )


def _timestamp(field: str, message: timestamp_pb2.Timestamp) -> int:
    if not _MIN_SECONDS <= message.seconds <= _MAX_SECONDS or not 0 <= message.nanos < _NS:
        raise InvalidArgument(
            f"{field}: seconds {message.seconds}, nanos {message.nanos} is not a timestamp between "
            "1970-01-01 and 2262-04-11",
            field=field,
        )
    return message.seconds * _NS + message.nanos


def parse_window(request_window: pb.TimeWindow, present: bool, field: str = "window") -> Window:
    """A window with unset bounds left to the service's defaults."""
    if not present:
        return Window()
    start = (
        _timestamp(f"{field}.start_time", request_window.start_time) if request_window.HasField("start_time") else None
    )
    end = _timestamp(f"{field}.end_time", request_window.end_time) if request_window.HasField("end_time") else None
    return Window(start, end)


def parse_step(message: duration_pb2.Duration, present: bool) -> int:
    """Whole seconds (default: one bucket)."""
    if not present:
        return BUCKET_SECONDS
    if message.nanos or message.seconds <= 0:
        raise InvalidArgument(
            f"step: {message.seconds} s {message.nanos} ns is not a positive whole number of seconds", field="step"
        )
    return int(message.seconds)


def parse_trace_id(value: str) -> bytes:
    """32 hex digits, not all zeros (upper case accepted)."""
    lowered = value.lower()
    if not _TRACE_ID.fullmatch(lowered) or lowered == "0" * 32:
        raise InvalidArgument(f"trace_id: {shorten(value)} is not 32 hex digits (and not all zeros)", field="trace_id")
    return bytes.fromhex(lowered)


def stats_to_proto(stats: LatencyStats) -> pb.LatencySummary:
    return pb.LatencySummary(
        count=stats.count,
        error_count=stats.error_count,
        p50_ms=stats.p50_ms,
        p90_ms=stats.p90_ms,
        p99_ms=stats.p99_ms,
        max_ms=stats.max_ms,
        relative_accuracy=RELATIVE_ACCURACY,
    )


def _value_text(value: common_pb2.AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind is None:
        return ""
    return json.dumps(json_format.MessageToDict(getattr(value, kind)), separators=(",", ":"))


def _timestamp_proto(ns: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def _span_to_proto(stored: StoredSpan) -> pb.Span:
    span = trace_pb2.Span()
    span.ParseFromString(stored.data)
    return pb.Span(
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        name=span.name,
        service=stored.service,
        start_time=_timestamp_proto(span.start_time_unix_nano),
        end_time=_timestamp_proto(span.end_time_unix_nano),
        error=span.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
        attributes={attribute.key: _value_text(attribute.value) for attribute in span.attributes},
    )


def trace_to_proto(trace_id: bytes, spans: list[StoredSpan]) -> pb.Trace:
    return pb.Trace(trace_id=trace_id.hex(), spans=[_span_to_proto(span) for span in spans])


def point_to_proto(start_seconds: int, stats: LatencyStats) -> pb.LatencyPoint:
    return pb.LatencyPoint(start_time=_timestamp_proto(start_seconds * _NS), summary=stats_to_proto(stats))


# ---------------------------------------------------------------- inferences and feedback

MAX_RECORDS = 10_000
MAX_RECORD_JSON = 256 * 1024
MAX_REQUEST_ID = 256


def _json_text(field: str, message: struct_pb2.Struct | struct_pb2.Value) -> str:
    try:
        text = json.dumps(json_format.MessageToDict(message), separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise InvalidArgument(f"{field}: holds a NaN or infinite number (JSON has none)", field=field) from None
    if len(text) > MAX_RECORD_JSON:
        raise ResourceExhausted(f"{field}: {len(text)} bytes of JSON, at most {MAX_RECORD_JSON}", field=field)
    return text


def _request_id(field: str, value: str) -> str:
    # Any id a caller gave serve (KServe's request ``id`` is free text) must be recordable.
    return fields.name(field, value, limit=MAX_REQUEST_ID)


def parse_records(records: Sequence[pb.InferenceRecord], now_ns: int) -> list[InferenceRecord]:
    """Every record checked before any is stored (a bad one refuses the call, naming ``records[i].<field>``)."""
    if len(records) > MAX_RECORDS:
        raise ResourceExhausted(f"records: {len(records)} records, at most {MAX_RECORDS} per call", field="records")
    parsed = []
    for index, record in enumerate(records):
        at = f"records[{index}]"
        if record.route not in ROUTES:
            raise InvalidArgument(
                f"{at}.route: {shorten(record.route)} is not one of {', '.join(ROUTES)}", field=f"{at}.route"
            )
        if not (math.isfinite(record.latency_ms) and record.latency_ms >= 0):
            raise InvalidArgument(
                f"{at}.latency_ms: {record.latency_ms} is not a non-negative number", field=f"{at}.latency_ms"
            )
        model, version = parse_version_name(f"{at}.model_version", record.model_version, "models", latest=False)
        assert version is not None
        parsed.append(
            InferenceRecord(
                request_id=_request_id(f"{at}.request_id", record.request_id),
                deployment=parse_name(f"{at}.deployment", record.deployment, "deployments/{deployment}")["deployment"],
                model=model,
                version=version,
                route=record.route,
                time_ns=_timestamp(f"{at}.time", record.time) if record.HasField("time") else now_ns,
                latency_ms=record.latency_ms,
                inputs_json=_json_text(f"{at}.inputs", record.inputs),
                outputs_json=_json_text(f"{at}.outputs", record.outputs),
                shadow_comparison=(
                    record.shadow_comparison.SerializeToString() if record.HasField("shadow_comparison") else b""
                ),
            )
        )
    return parsed


def parse_feedback(items: Sequence[pb.Feedback]) -> list[Feedback]:
    """Each item needs a request id and a ground truth that is not null."""
    if len(items) > MAX_RECORDS:
        raise ResourceExhausted(f"feedback: {len(items)} items, at most {MAX_RECORDS} per call", field="feedback")
    parsed = []
    for index, item in enumerate(items):
        at = f"feedback[{index}]"
        request_id = _request_id(f"{at}.request_id", item.request_id)
        kind = item.ground_truth.WhichOneof("kind")
        if kind is None or kind == "null_value":
            raise InvalidArgument(
                f"{at}.ground_truth: required (a label, a number, or a list with one per row)",
                field=f"{at}.ground_truth",
            )
        parsed.append(Feedback(request_id, _json_text(f"{at}.ground_truth", item.ground_truth)))
    return parsed


def parse_route(field: str, route: str) -> str:
    """Empty (every route), primary, canary or shadow."""
    if route and route not in ROUTES:
        raise InvalidArgument(f"{field}: {shorten(route)} is not one of {', '.join(ROUTES)}", field=field)
    return route


def performance_to_proto(model: str, version: int, route: str, found: Performance) -> pb.PerformanceReport:
    return pb.PerformanceReport(
        model_version=f"models/{model}/versions/{version}",
        route=route,
        labeled_count=found.labeled_count,
        accuracy=found.accuracy,
        mean_absolute_error=found.mean_absolute_error,
        root_mean_squared_error=found.root_mean_squared_error,
    )


def parse_since(value: int) -> int:
    """A watch's exclusive start sequence (0 replays everything)."""
    if value < 0:
        raise InvalidArgument(f"since_sequence: {value} must not be negative", field="since_sequence")
    return value
