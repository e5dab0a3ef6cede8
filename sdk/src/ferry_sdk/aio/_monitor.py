"""The asyncio client of ``ferry.monitor.v1.MonitorService``: samples, feedback, latency, traces, SLOs and alerts."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc.aio
from google.protobuf import duration_pb2, timestamp_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_sdk._watch import Backoff, ResumableAsyncWatch
from ferry_sdk.aio._base import AsyncClient

__all__ = ["AlertWatch", "MonitorClient"]

SERVICE = "ferry.monitor.v1.MonitorService"


class MonitorClient(AsyncClient):
    """Monitor's contract for asyncio callers (``FERRY_MONITOR_ADDRESS`` by default).

    Holds what monitor serves so far: ``record_inferences`` (serve's samples), feedback and
    performance, latency summaries and series, traces, SLOs and alerts. Drift joins it as
    monitor builds it.
    """

    _service = "monitor"
    _service_names = (SERVICE,)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = monitor_pb2_grpc.MonitorServiceStub(channel)

    async def record_inferences(self, records: Iterable[pb.InferenceRecord], *, timeout: float | None = None) -> int:
        """Send sampled inferences; returns how many monitor stored."""
        request = pb.RecordInferencesRequest(records=list(records))
        response: pb.RecordInferencesResponse = await self._call(self._stub.RecordInferences, request, timeout)
        return int(response.accepted_count)

    async def record_feedback(
        self, feedback: Iterable[pb.Feedback], *, timeout: float | None = None
    ) -> pb.RecordFeedbackResponse:
        """Send ground truth by request id; the response counts matches and lists unknown ids."""
        request = pb.RecordFeedbackRequest(feedback=list(feedback))
        response: pb.RecordFeedbackResponse = await self._call(self._stub.RecordFeedback, request, timeout)
        return response

    async def get_performance(
        self,
        model_version: str,
        *,
        route: str = "",
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        timeout: float | None = None,
    ) -> pb.PerformanceReport:
        """Accuracy (labels) or MAE/RMSE (predictions) of ``models/{m}/versions/{v}`` from feedback."""
        request = pb.GetPerformanceRequest(model_version=model_version, route=route, window=_window(start, end))
        report: pb.PerformanceReport = await self._call(self._stub.GetPerformance, request, timeout)
        return report

    async def get_latency_summary(
        self,
        filter: pb.SpanFilter | None = None,
        *,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        timeout: float | None = None,
    ) -> pb.LatencySummary:
        """Count, errors and p50/p90/p99/max (ms) of the matching spans (default window: the last 5 minutes)."""
        request = pb.GetLatencySummaryRequest(filter=filter or pb.SpanFilter(), window=_window(start, end))
        summary: pb.LatencySummary = await self._call(self._stub.GetLatencySummary, request, timeout)
        return summary

    async def list_latency_series(
        self,
        filter: pb.SpanFilter | None = None,
        *,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        step: datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> list[pb.LatencyPoint]:
        """One point per ``step`` (default 10 s, a multiple of 10 s) over the window, oldest first."""
        request = pb.ListLatencySeriesRequest(filter=filter or pb.SpanFilter(), window=_window(start, end))
        if step is not None:
            duration = duration_pb2.Duration()
            duration.FromTimedelta(step)
            request.step.CopyFrom(duration)
        response: pb.ListLatencySeriesResponse = await self._call(self._stub.ListLatencySeries, request, timeout)
        return list(response.points)

    async def get_trace(self, trace_id: str, *, timeout: float | None = None) -> pb.Trace:
        """Every span monitor still keeps of one trace (32 hex digits), across services, by start time."""
        trace: pb.Trace = await self._call(self._stub.GetTrace, pb.GetTraceRequest(trace_id=trace_id), timeout)
        return trace

    async def set_slo(self, slo_id: str, slo: pb.Slo, *, timeout: float | None = None) -> pb.Slo:
        """Create or replace ``slos/{slo_id}`` (re-armed: not breached)."""
        stored: pb.Slo = await self._call(self._stub.SetSlo, pb.SetSloRequest(slo_id=slo_id, slo=slo), timeout)
        return stored

    def list_slos(self, *, page_size: int = 0, timeout: float | None = None) -> AsyncIterator[pb.Slo]:
        """Every SLO by id, fetched page by page as iterated (``async for``)."""
        request = pb.ListSlosRequest(page_size=page_size)
        return self._pages(self._stub.ListSlos, request, lambda r: r.slos, timeout)

    def list_alerts(self, *, page_size: int = 0, timeout: float | None = None) -> AsyncIterator[pb.Alert]:
        """Every alert, oldest first, fetched page by page as iterated (``async for``)."""
        request = pb.ListAlertsRequest(page_size=page_size)
        return self._pages(self._stub.ListAlerts, request, lambda r: r.alerts, timeout)

    def watch_alerts(self, *, since_sequence: int = 0, backoff: Backoff | None = None) -> AlertWatch:
        """Follow alerts after ``since_sequence``, resuming across reconnects (``async for``)."""
        return AlertWatch(self._stub, since_sequence, Backoff.fresh(backoff))


class AlertWatch(ResumableAsyncWatch[pb.Alert]):
    """A resumable ``WatchAlerts`` stream: reconnects after the last sequence delivered.

    Attributes:
        sequence: the last sequence delivered.
    """

    def __init__(self, stub: monitor_pb2_grpc.MonitorServiceStub, since_sequence: int, backoff: Backoff) -> None:
        super().__init__(backoff)
        self._stub = stub
        self.sequence = since_sequence

    def _start(self) -> Any:
        return self._stub.WatchAlerts(pb.WatchAlertsRequest(since_sequence=self.sequence))

    def _accept(self, event: pb.Alert) -> bool:
        if event.sequence <= self.sequence:
            return False  # already delivered before a reconnect
        self.sequence = event.sequence
        return True


def _window(start: datetime.datetime | None, end: datetime.datetime | None) -> pb.TimeWindow:
    window = pb.TimeWindow()
    for value, target in ((start, window.start_time), (end, window.end_time)):
        if value is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(value)
            target.CopyFrom(stamp)
    return window
