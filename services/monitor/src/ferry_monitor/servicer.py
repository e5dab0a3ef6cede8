"""``ferry.monitor.v1.MonitorService`` and OTLP's ``TraceService`` over gRPC: parse, validate, map, delegate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_common.names import page_size, parse_version_name
from ferry_common.pagination import Pages
from ferry_monitor import drift_messages as dm
from ferry_monitor import messages as m
from ferry_monitor.drift_service import DriftService
from ferry_monitor.otlp import decode_batch
from ferry_monitor.service import MonitorService
from ferry_monitor.slo_messages import alert_to_proto, parse_slo, slo_to_proto
from ferry_monitor.slos import SloService

__all__ = ["MonitorServicer", "TraceServicer"]


class TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    """The standard OTLP/gRPC trace receiver: bad spans are rejected alone (``partial_success``)."""

    def __init__(self, service: MonitorService) -> None:
        self._service = service

    async def Export(self, request: otlp.ExportTraceServiceRequest, context: Any) -> otlp.ExportTraceServiceResponse:
        # Off the event loop: a big batch takes milliseconds of Python, and other calls
        # (health checks, summaries) should not wait behind it.
        batch = await asyncio.to_thread(
            decode_batch, request, now_ns=self._service.clock(), retention_seconds=self._service.retention_seconds
        )
        await self._service.export(batch)
        if not batch.rejected:
            return otlp.ExportTraceServiceResponse()
        partial = otlp.ExportTracePartialSuccess(rejected_spans=batch.rejected, error_message=batch.error_message)
        return otlp.ExportTraceServiceResponse(partial_success=partial)


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    """The gRPC face of :class:`MonitorService`, :class:`SloService` and :class:`DriftService`."""

    def __init__(self, service: MonitorService, slos: SloService, drift: DriftService) -> None:
        self._service = service
        self._slos = slos
        self._drift = drift

    async def GetLatencySummary(self, request: pb.GetLatencySummaryRequest, context: Any) -> pb.LatencySummary:
        span_filter = m.parse_filter(request.filter)
        window = m.parse_window(request.window, request.HasField("window"))
        return m.stats_to_proto(await self._service.latency_summary(span_filter, window))

    async def ListLatencySeries(
        self, request: pb.ListLatencySeriesRequest, context: Any
    ) -> pb.ListLatencySeriesResponse:
        span_filter = m.parse_filter(request.filter)
        window = m.parse_window(request.window, request.HasField("window"))
        step = m.parse_step(request.step, request.HasField("step"))
        points = await self._service.latency_series(span_filter, window, step)
        return pb.ListLatencySeriesResponse(points=[m.point_to_proto(start, stats) for start, stats in points])

    async def GetTrace(self, request: pb.GetTraceRequest, context: Any) -> pb.Trace:
        trace_id = m.parse_trace_id(request.trace_id)
        return m.trace_to_proto(trace_id, self._service.trace(trace_id))

    async def RecordInferences(self, request: pb.RecordInferencesRequest, context: Any) -> pb.RecordInferencesResponse:
        records = m.parse_records(request.records, self._service.clock())
        return pb.RecordInferencesResponse(accepted_count=await self._service.record_inferences(records))

    async def RecordFeedback(self, request: pb.RecordFeedbackRequest, context: Any) -> pb.RecordFeedbackResponse:
        accepted, unknown = await self._service.record_feedback(m.parse_feedback(request.feedback))
        return pb.RecordFeedbackResponse(accepted_count=accepted, unknown_request_ids=unknown)

    async def GetPerformance(self, request: pb.GetPerformanceRequest, context: Any) -> pb.PerformanceReport:
        model, version = parse_version_name("model_version", request.model_version, "models", latest=False)
        assert version is not None
        route = m.parse_route("route", request.route)
        window = m.parse_window(request.window, request.HasField("window"))
        found = await self._service.performance(model, version, route, window)
        return m.performance_to_proto(model, version, route, found)

    async def SetSlo(self, request: pb.SetSloRequest, context: Any) -> pb.Slo:
        slo = parse_slo(request.slo_id, request.slo, request.HasField("slo"))
        return slo_to_proto(await self._slos.set_slo(slo))

    async def ListSlos(self, request: pb.ListSlosRequest, context: Any) -> pb.ListSlosResponse:
        size = page_size(request.page_size)
        page = Pages(request.page_token, {"page_size": size})
        found = await self._slos.list_slos(page.position_str("after"), size + 1)
        kept, token = page.next(found, size, lambda last: {"after": last.slo_id})
        return pb.ListSlosResponse(slos=[slo_to_proto(slo) for slo in kept], next_page_token=token)

    async def ListAlerts(self, request: pb.ListAlertsRequest, context: Any) -> pb.ListAlertsResponse:
        size = page_size(request.page_size)
        page = Pages(request.page_token, {"page_size": size})
        found = await self._slos.list_alerts(page.position_int("after") or 0, size + 1)
        kept, token = page.next(found, size, lambda last: {"after": last.sequence})
        return pb.ListAlertsResponse(alerts=[alert_to_proto(alert) for alert in kept], next_page_token=token)

    async def WatchAlerts(self, request: pb.WatchAlertsRequest, context: Any) -> AsyncIterator[pb.Alert]:
        since = m.parse_since(request.since_sequence)
        async for alert in self._slos.watch(since):
            yield alert_to_proto(alert)

    async def GetDriftReport(self, request: pb.GetDriftReportRequest, context: Any) -> pb.DriftReport:
        model, version = dm.parse_model_version(request.model_version)
        window = m.parse_window(request.window, request.HasField("window"))
        numeric = dm.parse_numeric_method(request.numeric_method)
        return dm.report_to_proto(await self._drift.report(model, version, window, numeric))

    async def SetModelPolicy(self, request: pb.SetModelPolicyRequest, context: Any) -> pb.ModelPolicy:
        return dm.policy_to_proto(await self._drift.set_policy(dm.parse_policy(request)))

    async def GetModelPolicy(self, request: pb.GetModelPolicyRequest, context: Any) -> pb.ModelPolicy:
        return dm.policy_to_proto(await self._drift.get_policy(dm.parse_policy_name(request.name)))
