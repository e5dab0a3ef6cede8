"""Proto <-> domain for SLOs and alerts; each check names the request field it rejects."""

from __future__ import annotations

import math

from google.protobuf import timestamp_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry_common.errors import InvalidArgument
from ferry_common.names import validate_id
from ferry_monitor.messages import parse_filter
from ferry_monitor.slos import Alert, BreachAction, Slo

__all__ = ["DEFAULT_MIN_COUNT", "DEFAULT_WINDOW_SECONDS", "alert_to_proto", "parse_slo", "slo_to_proto"]

DEFAULT_WINDOW_SECONDS = 300
DEFAULT_MIN_COUNT = 20
_MAX_WINDOW_SECONDS = 30 * 86_400


def _finite(field: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{field}: {value} must be a finite number >= 0", field=field)
    return value


def parse_slo(slo_id: str, message: pb.Slo, present: bool) -> Slo:
    """A SetSlo request's objective: percentile in (0, 100), window > 0, at least one threshold."""
    validate_id("slo_id", slo_id)
    if not present:
        raise InvalidArgument("slo: required", field="slo")
    if not (0 < message.percentile < 100) or not math.isfinite(message.percentile):
        raise InvalidArgument(
            f"slo.percentile: {message.percentile} must be in (0, 100), e.g. 99", field="slo.percentile"
        )
    threshold = _finite("slo.latency_threshold_ms", message.latency_threshold_ms)
    error_rate = _finite("slo.max_error_rate", message.max_error_rate)
    if error_rate > 1:
        raise InvalidArgument(
            f"slo.max_error_rate: {error_rate} must be a fraction in [0, 1]", field="slo.max_error_rate"
        )
    if threshold == 0 and error_rate == 0:
        raise InvalidArgument(
            "slo.latency_threshold_ms: give a latency threshold or slo.max_error_rate (both are 0)",
            field="slo.latency_threshold_ms",
        )
    window = DEFAULT_WINDOW_SECONDS
    if message.HasField("window"):
        seconds = message.window.seconds + message.window.nanos / 1e9
        if seconds <= 0 or seconds > _MAX_WINDOW_SECONDS or seconds != int(seconds):
            raise InvalidArgument(
                f"slo.window: {seconds} s must be whole seconds in (0, {_MAX_WINDOW_SECONDS}]", field="slo.window"
            )
        window = int(seconds)
    if message.min_count < 0:
        raise InvalidArgument(f"slo.min_count: {message.min_count} must not be negative", field="slo.min_count")
    if message.action not in pb.BreachAction.values():
        raise InvalidArgument(f"slo.action: {message.action} is not a BreachAction", field="slo.action")
    return Slo(
        slo_id=slo_id,
        filter=parse_filter(message.filter, "slo.filter"),
        percentile=message.percentile,
        latency_threshold_ms=threshold,
        max_error_rate=error_rate,
        window_seconds=window,
        min_count=message.min_count or DEFAULT_MIN_COUNT,
        action=BreachAction(message.action or BreachAction.ALERT),
    )


def slo_to_proto(slo: Slo) -> pb.Slo:
    f = slo.filter
    message = pb.Slo(
        name=f"slos/{slo.slo_id}",
        filter=pb.SpanFilter(
            service=f.service, method=f.method, deployment=f.deployment, model=f.model, version=f.version, route=f.route
        ),
        percentile=slo.percentile,
        latency_threshold_ms=slo.latency_threshold_ms,
        max_error_rate=slo.max_error_rate,
        min_count=slo.min_count,
        action=int(slo.action),  # type: ignore[arg-type]
        breached=slo.breached,
    )
    message.window.seconds = slo.window_seconds
    return message


def alert_to_proto(alert: Alert) -> pb.Alert:
    created = timestamp_pb2.Timestamp()
    created.FromNanoseconds(alert.create_time_ns)
    return pb.Alert(
        name=f"alerts/{alert.sequence}",
        sequence=alert.sequence,
        kind=int(alert.kind),  # type: ignore[arg-type]
        slo=alert.slo,
        model_version=alert.model_version,
        deployment=alert.deployment,
        message=alert.message,
        action=int(alert.action),  # type: ignore[arg-type]
        action_result=alert.action_result,
        create_time=created,
    )
