"""Requests of ``ferry.monitor.v1`` from Pythonic arguments, and the alert watch's resume rule (both flavours).

- A span filter is a ``SpanFilter``, or its fields as keywords: ``deployment="churn"``,
  ``model="churn"`` (``deployments/churn`` and ``models/churn`` work too: spans carry the
  bare ids), ``version=3``, ``route="canary"``, ``service="ferry-serve"``, ``method=...``.
- A window is ``start`` / ``end`` (``datetime``, naive = UTC) or ``last`` (a ``timedelta``
  ending at ``end``, default now); nothing given is monitor's default, the last 5 minutes.
- A model version is ``models/churn/versions/3``, or ``churn`` / ``models/churn`` with
  ``version=3``.
- Actions and drift methods are strings (``"stop_canary"``, ``"ks"``) or the enum values.

An alert watch resumes like an alias watch (:mod:`ferry_sdk._watch`): after a break with
UNAVAILABLE it reconnects with ``since_sequence`` = the last sequence it *delivered*;
sequences are gap-free and increasing, so a replayed alert is dropped.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry_sdk._registry_messages import model_name

__all__ = [
    "ActionLike",
    "AlertCursor",
    "DriftMethodLike",
    "FeedbackLike",
    "action_name",
    "breach_action",
    "drift_method",
    "drift_request",
    "duration",
    "feedback_messages",
    "latency_request",
    "model_id",
    "model_version_name",
    "performance_request",
    "policy_message",
    "policy_name",
    "series_request",
    "slo_message",
    "span_filter",
    "time_window",
]

ActionLike: TypeAlias = "str | pb.BreachAction"
"""``"alert"``, ``"stop_canary"``, ``"rollback"`` or a ``BreachAction`` value."""
DriftMethodLike: TypeAlias = "str | pb.DriftMethod"
"""``"psi"``, ``"ks"``, ``"wasserstein"``, ``"chi_squared"`` or a ``DriftMethod`` value."""
FeedbackLike: TypeAlias = "Mapping[str, object] | Iterable[pb.Feedback]"
"""``{request_id: true label or value}`` (a list: one per row), or ``Feedback`` messages."""

_ACTIONS = {
    "alert": pb.BREACH_ACTION_ALERT,
    "stop_canary": pb.BREACH_ACTION_STOP_CANARY,
    "rollback": pb.BREACH_ACTION_ROLLBACK,
}
_METHODS = {
    "psi": pb.DRIFT_METHOD_PSI,
    "ks": pb.DRIFT_METHOD_KS,
    "wasserstein": pb.DRIFT_METHOD_WASSERSTEIN,
    "chi_squared": pb.DRIFT_METHOD_CHI_SQUARED,
}


def model_id(model: str) -> str:
    """``churn`` or ``models/churn`` -> ``churn`` (what spans and policies name)."""
    return model.removeprefix("models/")


def model_version_name(model_version: str, version: int | None = None) -> str:
    """``models/churn/versions/3`` as given, or ``churn`` / ``models/churn`` with ``version=3``."""
    if version is None:
        if "/versions/" not in model_version:
            raise ValueError(
                f"model version {model_version!r}: give models/<model>/versions/<n>, or the model with version=<n>"
            )
        return model_version
    if "/versions/" in model_version:
        raise ValueError(f"model version {model_version!r} already names a version: leave version out")
    return f"{model_name(model_version)}/versions/{version}"


def policy_name(model: str) -> str:
    """``churn``, ``models/churn`` or ``policies/churn`` -> ``policies/churn``."""
    return model if model.startswith("policies/") else f"policies/{model_id(model)}"


def span_filter(
    filter: pb.SpanFilter | None = None,
    *,
    service: str = "",
    method: str = "",
    model: str = "",
    version: int = 0,
    route: str = "",
    deployment: str = "",
) -> pb.SpanFilter:
    """A ``SpanFilter``: ``filter`` as given, else from the keywords (empty fields match everything)."""
    if filter is not None:
        if service or method or model or version or route or deployment:
            raise ValueError("pass either filter or its fields (deployment=, model=, ...), not both")
        return filter
    return pb.SpanFilter(
        service=service,
        method=method,
        model=model_id(model),
        version=version,
        route=route,
        deployment=deployment.removeprefix("deployments/"),
    )


def _timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)  # naive = UTC; aware converted
    return stamp


def duration(value: datetime.timedelta | float) -> duration_pb2.Duration:
    """A ``timedelta`` or seconds as a ``Duration``."""
    message = duration_pb2.Duration()
    message.FromTimedelta(value if isinstance(value, datetime.timedelta) else datetime.timedelta(seconds=value))
    return message


def time_window(
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
    last: datetime.timedelta | None = None,
) -> pb.TimeWindow:
    """``[start, end)``, or the ``last`` span of time up to ``end`` (default now); empty parts: monitor's defaults."""
    if last is not None:
        if start is not None:
            raise ValueError("give start or last, not both")
        if last <= datetime.timedelta(0):
            raise ValueError(f"last must be a positive duration, not {last}")
        end = end if end is not None else datetime.datetime.now(datetime.UTC)
        start = end - last
    window = pb.TimeWindow()
    if start is not None:
        window.start_time.CopyFrom(_timestamp(start))
    if end is not None:
        window.end_time.CopyFrom(_timestamp(end))
    return window


def latency_request(
    filter: pb.SpanFilter,
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    last: datetime.timedelta | None,
) -> pb.GetLatencySummaryRequest:
    return pb.GetLatencySummaryRequest(filter=filter, window=time_window(start, end, last))


def series_request(
    filter: pb.SpanFilter,
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    last: datetime.timedelta | None,
    step: datetime.timedelta | float | None,
) -> pb.ListLatencySeriesRequest:
    request = pb.ListLatencySeriesRequest(filter=filter, window=time_window(start, end, last))
    if step is not None:
        request.step.CopyFrom(duration(step))
    return request


def performance_request(
    model_version: str,
    version: int | None,
    route: str,
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    last: datetime.timedelta | None,
) -> pb.GetPerformanceRequest:
    return pb.GetPerformanceRequest(
        model_version=model_version_name(model_version, version), route=route, window=time_window(start, end, last)
    )


def drift_method(method: DriftMethodLike | None) -> pb.DriftMethod:
    """A drift method name (``psi``, ``ks``, ``wasserstein``, ``chi_squared``) or value; ``None``: monitor's default."""
    if method is None or method == "":
        return pb.DRIFT_METHOD_UNSPECIFIED
    if isinstance(method, str):
        key = method.lower().replace("-", "_").removeprefix("drift_method_")
        if key not in _METHODS:
            raise ValueError(f"drift method {method!r} is not one of {', '.join(_METHODS)}")
        return _METHODS[key]
    return method


def drift_request(
    model_version: str,
    version: int | None,
    method: DriftMethodLike | None,
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    last: datetime.timedelta | None,
) -> pb.GetDriftReportRequest:
    return pb.GetDriftReportRequest(
        model_version=model_version_name(model_version, version),
        window=time_window(start, end, last),
        numeric_method=drift_method(method),
    )


def breach_action(action: ActionLike) -> pb.BreachAction:
    """``alert``, ``stop_canary`` (``stop-canary``), ``rollback`` or a ``BreachAction`` value."""
    if isinstance(action, str):
        key = action.lower().replace("-", "_").removeprefix("breach_action_")
        if key not in _ACTIONS:
            raise ValueError(f"action {action!r} is not one of {', '.join(_ACTIONS)}")
        return _ACTIONS[key]
    return action


def action_name(action: int) -> str:
    """``BREACH_ACTION_STOP_CANARY`` -> ``stop_canary`` (unset reads as ``alert``, as monitor treats it)."""
    if action == pb.BREACH_ACTION_UNSPECIFIED:
        return "alert"
    return pb.BreachAction.Name(action).removeprefix("BREACH_ACTION_").lower()


def slo_message(
    slo: pb.Slo | None,
    *,
    filter: pb.SpanFilter,
    percentile: float,
    latency_threshold_ms: float,
    max_error_rate: float,
    window: datetime.timedelta | float | None,
    min_count: int,
    action: ActionLike,
) -> pb.Slo:
    """An ``Slo``: ``slo`` as given, else from the keywords."""
    if slo is not None:
        return slo
    message = pb.Slo(
        filter=filter,
        percentile=percentile,
        latency_threshold_ms=latency_threshold_ms,
        max_error_rate=max_error_rate,
        min_count=min_count,
        action=breach_action(action),
    )
    if window is not None:
        message.window.CopyFrom(duration(window))
    return message


def policy_message(
    model: str,
    policy: pb.ModelPolicy | None,
    *,
    drift_threshold: float,
    retrain_on_drift: bool,
    min_accuracy: float,
) -> pb.ModelPolicy:
    """A ``ModelPolicy`` named ``policies/{model}``: ``policy``'s fields, else the keywords."""
    message = pb.ModelPolicy()
    if policy is not None:
        message.CopyFrom(policy)
    else:
        message.drift_threshold = drift_threshold
        message.retrain_on_drift = retrain_on_drift
        message.min_accuracy = min_accuracy
    if model:
        message.name = policy_name(model)
    return message


def feedback_messages(feedback: FeedbackLike) -> list[pb.Feedback]:
    """``{request_id: truth}`` or ``Feedback`` messages as a list of ``Feedback``."""
    if not isinstance(feedback, Mapping):
        return list(feedback)
    messages = []
    for request_id, truth in feedback.items():
        value = struct_pb2.Value()
        if isinstance(truth, (list, tuple)):
            value.list_value.extend(list(truth))
        elif isinstance(truth, bool):
            value.bool_value = truth
        elif isinstance(truth, int | float):
            value.number_value = float(truth)
        else:
            value.string_value = str(truth)
        messages.append(pb.Feedback(request_id=str(request_id), ground_truth=value))
    return messages


@dataclass
class AlertCursor:
    """Where an alert watch stands: the last sequence delivered."""

    sequence: int

    def request(self) -> pb.WatchAlertsRequest:
        return pb.WatchAlertsRequest(since_sequence=self.sequence)

    def accept(self, alert: pb.Alert) -> bool:
        """Whether ``alert`` is new (and, if so, move the cursor past it)."""
        if alert.sequence <= self.sequence:
            return False  # already delivered before a reconnect
        self.sequence = alert.sequence
        return True
