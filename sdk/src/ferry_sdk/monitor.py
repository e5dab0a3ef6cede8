"""The blocking client of ``ferry.monitor.v1.MonitorService``: latency, traces, feedback, SLOs, alerts, drift."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from typing import Any

import grpc

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_sdk._base import SyncClient
from ferry_sdk._monitor_messages import (
    ActionLike,
    AlertCursor,
    DriftMethodLike,
    FeedbackLike,
    drift_request,
    feedback_messages,
    latency_request,
    performance_request,
    policy_message,
    policy_name,
    series_request,
    slo_message,
    span_filter,
)
from ferry_sdk._watch import Backoff, ResumableWatch

__all__ = ["AlertWatch", "MonitorClient"]

SERVICE = "ferry.monitor.v1.MonitorService"


class MonitorClient(SyncClient):
    """What every service is doing and how models behave (monitor's ``MonitorService``), blocking.

    Args:
        address: ``host:port``; default ``FERRY_MONITOR_ADDRESS`` (through ``ferry_common.settings``).
        settings: the caller's settings (token, TLS, default deadline); read from the
            ``FERRY_*`` environment when omitted.
        timeout: default deadline of unary calls, seconds (default ``FERRY_CALL_TIMEOUT_SECONDS``).
        tracer_provider: record client spans and propagate the trace context.

    Every method raises a :class:`ferry_sdk.errors.FerryError` subclass on failure. Spans are
    selected by a ``SpanFilter`` or its fields as keywords (``deployment="churn"``,
    ``route="canary"``, ...); windows are ``start``/``end`` datetimes or ``last`` (a
    ``timedelta`` up to now); none given is the last 5 minutes.

        with MonitorClient() as monitor:
            summary = monitor.get_latency_summary(deployment="churn", last=timedelta(minutes=15))
            print(summary.count, summary.p99_ms)
            monitor.set_slo("churn-p99", deployment="churn", route="canary", percentile=99,
                            latency_threshold_ms=50, action="stop_canary")
            for alert in monitor.watch_alerts():
                print(alert.message, alert.action_result)
    """

    _service = "monitor"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.Channel) -> None:
        self._stub = monitor_pb2_grpc.MonitorServiceStub(channel)

    # Latency and traces

    def get_latency_summary(
        self,
        filter: pb.SpanFilter | None = None,
        *,
        deployment: str = "",
        model: str = "",
        version: int = 0,
        route: str = "",
        service: str = "",
        method: str = "",
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        last: datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> pb.LatencySummary:
        """Count, errors and p50/p90/p99/max (ms) of the matching spans over the window."""
        chosen = span_filter(
            filter, service=service, method=method, model=model, version=version, route=route, deployment=deployment
        )
        summary: pb.LatencySummary = self._call(
            self._stub.GetLatencySummary, latency_request(chosen, start, end, last), timeout
        )
        return summary

    def list_latency_series(
        self,
        filter: pb.SpanFilter | None = None,
        *,
        deployment: str = "",
        model: str = "",
        version: int = 0,
        route: str = "",
        service: str = "",
        method: str = "",
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        last: datetime.timedelta | None = None,
        step: datetime.timedelta | float | None = None,
        timeout: float | None = None,
    ) -> list[pb.LatencyPoint]:
        """One point per ``step`` (default 10 s, a multiple of 10 s) over the window, oldest first."""
        chosen = span_filter(
            filter, service=service, method=method, model=model, version=version, route=route, deployment=deployment
        )
        response: pb.ListLatencySeriesResponse = self._call(
            self._stub.ListLatencySeries, series_request(chosen, start, end, last, step), timeout
        )
        return list(response.points)

    def get_trace(self, trace_id: str, *, timeout: float | None = None) -> pb.Trace:
        """Every span monitor still keeps of one trace (32 hex digits), across services, by start time."""
        trace: pb.Trace = self._call(self._stub.GetTrace, pb.GetTraceRequest(trace_id=trace_id), timeout)
        return trace

    # Samples, feedback, quality

    def record_inferences(self, records: Iterable[pb.InferenceRecord], *, timeout: float | None = None) -> int:
        """Send sampled inferences (what serve does); returns how many monitor stored."""
        request = pb.RecordInferencesRequest(records=list(records))
        response: pb.RecordInferencesResponse = self._call(self._stub.RecordInferences, request, timeout)
        return int(response.accepted_count)

    def record_feedback(
        self,
        feedback: FeedbackLike,
        *,
        timeout: float | None = None,
    ) -> pb.RecordFeedbackResponse:
        """Send ground truth by request id: ``{request_id: label_or_value}`` or ``Feedback`` messages.

        The response counts the matches and lists the request ids monitor has no inference for.
        """
        request = pb.RecordFeedbackRequest(feedback=feedback_messages(feedback))
        response: pb.RecordFeedbackResponse = self._call(self._stub.RecordFeedback, request, timeout)
        return response

    def get_performance(
        self,
        model_version: str,
        *,
        version: int | None = None,
        route: str = "",
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        last: datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> pb.PerformanceReport:
        """Accuracy (labels) or MAE/RMSE (values) of a version from feedback.

        ``model_version``: ``models/churn/versions/3``, or ``churn`` with ``version=3``;
        ``route``: only inferences answered on ``primary``, ``canary`` or ``shadow``.
        """
        request = performance_request(model_version, version, route, start, end, last)
        report: pb.PerformanceReport = self._call(self._stub.GetPerformance, request, timeout)
        return report

    def get_drift_report(
        self,
        model_version: str,
        *,
        version: int | None = None,
        method: DriftMethodLike | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        last: datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> pb.DriftReport:
        """Per-feature drift of a version's live inputs against its training split's profile.

        ``method``: the test for numeric features (``psi`` default, ``ks``, ``wasserstein``).
        """
        request = drift_request(model_version, version, method, start, end, last)
        report: pb.DriftReport = self._call(self._stub.GetDriftReport, request, timeout)
        return report

    # SLOs and alerts

    def set_slo(
        self,
        slo_id: str,
        slo: pb.Slo | None = None,
        *,
        deployment: str = "",
        model: str = "",
        version: int = 0,
        route: str = "",
        service: str = "",
        method: str = "",
        percentile: float = 99.0,
        latency_threshold_ms: float = 0.0,
        max_error_rate: float = 0.0,
        window: datetime.timedelta | float | None = None,
        min_count: int = 0,
        action: ActionLike = "alert",
        timeout: float | None = None,
    ) -> pb.Slo:
        """Create or replace ``slos/{slo_id}`` (re-armed: not breached).

        Args:
            slo_id: the id (``p99-churn``) or ``slos/p99-churn``.
            slo: a complete ``Slo`` message; then leave the other arguments out.
            deployment, model, version, route, service, method: the spans judged.
            percentile: the percentile checked, in (0, 100).
            latency_threshold_ms: breach when that percentile exceeds this (0: not checked).
            max_error_rate: breach when the error rate exceeds this fraction (0: not checked).
            window: the window evaluated (default 5 minutes).
            min_count: fewest spans before judging (0: monitor's default, 20).
            action: ``alert``, ``stop_canary`` (the deployment's canary to 0%) or ``rollback``.
        """
        message = slo_message(
            slo,
            filter=span_filter(
                None, service=service, method=method, model=model, version=version, route=route, deployment=deployment
            ),
            percentile=percentile,
            latency_threshold_ms=latency_threshold_ms,
            max_error_rate=max_error_rate,
            window=window,
            min_count=min_count,
            action=action,
        )
        request = pb.SetSloRequest(slo_id=slo_id.removeprefix("slos/"), slo=message)
        stored: pb.Slo = self._call(self._stub.SetSlo, request, timeout)
        return stored

    def list_slos(self, *, page_size: int = 0, timeout: float | None = None) -> Iterator[pb.Slo]:
        """Every SLO by id, fetched page by page as iterated."""
        request = pb.ListSlosRequest(page_size=page_size)
        return self._pages(self._stub.ListSlos, request, lambda r: r.slos, timeout)

    def list_alerts(self, *, page_size: int = 0, timeout: float | None = None) -> Iterator[pb.Alert]:
        """Every alert, oldest first (by sequence), fetched page by page as iterated."""
        request = pb.ListAlertsRequest(page_size=page_size)
        return self._pages(self._stub.ListAlerts, request, lambda r: r.alerts, timeout)

    def watch_alerts(self, *, since_sequence: int = 0, backoff: Backoff | None = None) -> AlertWatch:
        """Follow alerts after ``since_sequence`` (0 replays every alert kept), then new ones as raised.

        The watch reconnects by itself when the stream breaks with UNAVAILABLE (a monitor
        restart), resuming after the last sequence it delivered: no alert is missed or
        repeated. Iterate it; :meth:`AlertWatch.cancel` (from any thread) or leaving a
        ``with`` block ends it.
        """
        return AlertWatch(self._stub, since_sequence, Backoff.fresh(backoff))

    # Policies

    def set_model_policy(
        self,
        model: str,
        policy: pb.ModelPolicy | None = None,
        *,
        drift_threshold: float = 0.0,
        retrain_on_drift: bool = False,
        min_accuracy: float = 0.0,
        timeout: float | None = None,
    ) -> pb.ModelPolicy:
        """Set what monitor does for one model (``churn``, ``models/churn`` or ``policies/churn``).

        Args:
            policy: a complete ``ModelPolicy`` (its name is set from ``model``); else the keywords.
            drift_threshold: drift that triggers action, PSI above this (0: monitor's default, 0.2).
            retrain_on_drift: start a retraining job on the newest dataset version on drift.
            min_accuracy: accuracy below this raises a performance alert (0: not checked).
        """
        message = policy_message(
            model, policy, drift_threshold=drift_threshold, retrain_on_drift=retrain_on_drift, min_accuracy=min_accuracy
        )
        stored: pb.ModelPolicy = self._call(
            self._stub.SetModelPolicy, pb.SetModelPolicyRequest(policy=message), timeout
        )
        return stored

    def get_model_policy(self, model: str, *, timeout: float | None = None) -> pb.ModelPolicy:
        """A model's policy (``churn``, ``models/churn`` or ``policies/churn``)."""
        request = pb.GetModelPolicyRequest(name=policy_name(model))
        policy: pb.ModelPolicy = self._call(self._stub.GetModelPolicy, request, timeout)
        return policy


class AlertWatch(ResumableWatch[pb.Alert]):
    """A resumable ``WatchAlerts`` stream (see :meth:`MonitorClient.watch_alerts`).

    Attributes:
        sequence: the last sequence delivered (pass it as ``since_sequence`` to resume).
    """

    def __init__(self, stub: monitor_pb2_grpc.MonitorServiceStub, since_sequence: int, backoff: Backoff) -> None:
        super().__init__(backoff)
        self._stub = stub
        self._cursor = AlertCursor(since_sequence)

    @property
    def sequence(self) -> int:
        return self._cursor.sequence

    def _start(self) -> Any:
        return self._stub.WatchAlerts(self._cursor.request())

    def _accept(self, event: pb.Alert) -> bool:
        return self._cursor.accept(event)
