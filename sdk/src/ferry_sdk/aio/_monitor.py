"""The asyncio client of ``ferry.monitor.v1.MonitorService``: latency, traces, feedback, SLOs, alerts, drift."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc.aio

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
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
from ferry_sdk._watch import Backoff, ResumableAsyncWatch
from ferry_sdk.aio._base import AsyncClient

__all__ = ["AlertWatch", "MonitorClient"]

SERVICE = "ferry.monitor.v1.MonitorService"


class MonitorClient(AsyncClient):
    """Monitor's contract for asyncio callers (``FERRY_MONITOR_ADDRESS`` by default).

    The same methods as :class:`ferry_sdk.MonitorClient`, as coroutines; ``list_*`` return
    async iterators and ``watch_alerts`` an :class:`AlertWatch` (``async for``). Serve sends
    its samples through ``record_inferences``.
    """

    _service = "monitor"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = monitor_pb2_grpc.MonitorServiceStub(channel)

    # Latency and traces

    async def get_latency_summary(
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
        """Count, errors and p50/p90/p99/max (ms) of the matching spans (default window: the last 5 minutes)."""
        chosen = span_filter(
            filter, service=service, method=method, model=model, version=version, route=route, deployment=deployment
        )
        request = latency_request(chosen, start, end, last)
        summary: pb.LatencySummary = await self._call(self._stub.GetLatencySummary, request, timeout)
        return summary

    async def list_latency_series(
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
        request = series_request(chosen, start, end, last, step)
        response: pb.ListLatencySeriesResponse = await self._call(self._stub.ListLatencySeries, request, timeout)
        return list(response.points)

    async def get_trace(self, trace_id: str, *, timeout: float | None = None) -> pb.Trace:
        """Every span monitor still keeps of one trace (32 hex digits), across services, by start time."""
        trace: pb.Trace = await self._call(self._stub.GetTrace, pb.GetTraceRequest(trace_id=trace_id), timeout)
        return trace

    # Samples, feedback, quality

    async def record_inferences(self, records: Iterable[pb.InferenceRecord], *, timeout: float | None = None) -> int:
        """Send sampled inferences; returns how many monitor stored."""
        request = pb.RecordInferencesRequest(records=list(records))
        response: pb.RecordInferencesResponse = await self._call(self._stub.RecordInferences, request, timeout)
        return int(response.accepted_count)

    async def record_feedback(
        self, feedback: FeedbackLike, *, timeout: float | None = None
    ) -> pb.RecordFeedbackResponse:
        """Send ground truth by request id (``{request_id: truth}`` or ``Feedback`` messages).

        The response counts the matches and lists the request ids monitor has no inference for.
        """
        request = pb.RecordFeedbackRequest(feedback=feedback_messages(feedback))
        response: pb.RecordFeedbackResponse = await self._call(self._stub.RecordFeedback, request, timeout)
        return response

    async def get_performance(
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
        """Accuracy (labels) or MAE/RMSE (values) of ``models/{m}/versions/{v}`` (or ``m``, ``version=v``)."""
        request = performance_request(model_version, version, route, start, end, last)
        report: pb.PerformanceReport = await self._call(self._stub.GetPerformance, request, timeout)
        return report

    async def get_drift_report(
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
        """Per-feature drift of a version's live inputs against its training split's profile."""
        request = drift_request(model_version, version, method, start, end, last)
        report: pb.DriftReport = await self._call(self._stub.GetDriftReport, request, timeout)
        return report

    # SLOs and alerts

    async def set_slo(
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
        """Create or replace ``slos/{slo_id}`` (re-armed: not breached); arguments as in the blocking client."""
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
        stored: pb.Slo = await self._call(self._stub.SetSlo, request, timeout)
        return stored

    def list_slos(self, *, page_size: int = 0, timeout: float | None = None) -> AsyncIterator[pb.Slo]:
        """Every SLO by id, fetched page by page as iterated (``async for``)."""
        request = pb.ListSlosRequest(page_size=page_size)
        return self._pages(self._stub.ListSlos, request, lambda r: r.slos, timeout)

    def list_alerts(self, *, page_size: int = 0, timeout: float | None = None) -> AsyncIterator[pb.Alert]:
        """Every alert, oldest first (by sequence), fetched page by page as iterated (``async for``)."""
        request = pb.ListAlertsRequest(page_size=page_size)
        return self._pages(self._stub.ListAlerts, request, lambda r: r.alerts, timeout)

    def watch_alerts(self, *, since_sequence: int = 0, backoff: Backoff | None = None) -> AlertWatch:
        """Follow alerts after ``since_sequence``, resuming across reconnects (``async for``)."""
        return AlertWatch(self._stub, since_sequence, Backoff.fresh(backoff))

    # Policies

    async def set_model_policy(
        self,
        model: str,
        policy: pb.ModelPolicy | None = None,
        *,
        drift_threshold: float = 0.0,
        retrain_on_drift: bool = False,
        min_accuracy: float = 0.0,
        timeout: float | None = None,
    ) -> pb.ModelPolicy:
        """Set what monitor does for one model (``churn``, ``models/churn`` or ``policies/churn``)."""
        message = policy_message(
            model, policy, drift_threshold=drift_threshold, retrain_on_drift=retrain_on_drift, min_accuracy=min_accuracy
        )
        request = pb.SetModelPolicyRequest(policy=message)
        stored: pb.ModelPolicy = await self._call(self._stub.SetModelPolicy, request, timeout)
        return stored

    async def get_model_policy(self, model: str, *, timeout: float | None = None) -> pb.ModelPolicy:
        """A model's policy (``churn``, ``models/churn`` or ``policies/churn``)."""
        request = pb.GetModelPolicyRequest(name=policy_name(model))
        policy: pb.ModelPolicy = await self._call(self._stub.GetModelPolicy, request, timeout)
        return policy


class AlertWatch(ResumableAsyncWatch[pb.Alert]):
    """A resumable ``WatchAlerts`` stream: reconnects after the last sequence delivered.

    Attributes:
        sequence: the last sequence delivered.
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
