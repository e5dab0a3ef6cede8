"""MonitorService and the OTLP receiver through gRPC, on an in-process server with the real interceptors.

Spans are sent by the OpenTelemetry SDK's own ``OTLPSpanExporter``.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.trace import SpanKind

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings
from ferry_monitor.__main__ import build
from ferry_monitor.testing import emit_spans, exporting_provider

NS = 1_000_000_000


@pytest.fixture
def monitor(tmp_path: pathlib.Path) -> Iterator[ServiceThread]:
    with ServiceThread(test_settings("monitor", tmp_path), build) as service:
        yield service


@pytest.fixture
def stub(monitor: ServiceThread) -> Iterator[monitor_pb2_grpc.MonitorServiceStub]:
    with monitor.channel() as channel:
        yield monitor_pb2_grpc.MonitorServiceStub(channel)


def window(start_ns: int, end_ns: int) -> pb.TimeWindow:
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.FromNanoseconds(start_ns)
    end.FromNanoseconds(end_ns)
    return pb.TimeWindow(start_time=start, end_time=end)


def field_of(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    return str(detail.field_violations[0].field)


def test_summary_counts_are_exact_and_percentiles_within_one_percent(
    monitor: ServiceThread, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    rng = np.random.default_rng(7)
    durations = (rng.lognormal(np.log(20e6), 0.8, 3000)).astype(np.int64)  # ~20 ms median, in ns
    errors = [i % 10 == 0 for i in range(len(durations))]
    now = time.time_ns()
    provider = exporting_provider(monitor.target, "svc-a")
    emit_spans(provider, durations.tolist(), end_ns=now, errors=errors)
    # Another service and a client span: neither may leak into svc-a's figures.
    emit_spans(provider, [1_000_000] * 50, end_ns=now, kind=SpanKind.CLIENT)
    other = exporting_provider(monitor.target, "svc-b")
    emit_spans(other, [5_000_000] * 40, end_ns=now)
    assert provider.force_flush(30_000) and other.force_flush(30_000)
    provider.shutdown()
    other.shutdown()

    request = pb.GetLatencySummaryRequest(
        filter=pb.SpanFilter(service="svc-a"), window=window(now - 60 * NS, now + 60 * NS)
    )
    summary = stub.GetLatencySummary(request, timeout=10)
    assert summary.count == len(durations)
    assert summary.error_count == sum(errors)
    assert summary.relative_accuracy == pytest.approx(0.005)
    exact_ms = np.sort(durations) / 1e6
    assert summary.max_ms == pytest.approx(exact_ms[-1], rel=1e-9)
    for q, got in ((0.5, summary.p50_ms), (0.9, summary.p90_ms), (0.99, summary.p99_ms)):
        exact = float(np.quantile(exact_ms, q, method="lower"))  # the value at rank q * (n - 1)
        assert abs(got - exact) <= 0.01 * exact, (q, got, exact)
        assert abs(got - exact) <= summary.relative_accuracy * exact * 1.0001, (q, got, exact)

    everything = stub.GetLatencySummary(
        pb.GetLatencySummaryRequest(window=window(now - 60 * NS, now + 60 * NS)), timeout=10
    )
    assert everything.count >= len(durations) + 40  # svc-b's too (and monitor's own RPCs, if traced)
    by_method = stub.GetLatencySummary(
        pb.GetLatencySummaryRequest(
            filter=pb.SpanFilter(service="svc-b", method="/test.v1.TestService/Call"),
            window=window(now - 60 * NS, now + 60 * NS),
        ),
        timeout=10,
    )
    assert (by_method.count, by_method.error_count) == (40, 0)
    assert by_method.p50_ms == pytest.approx(5.0, rel=0.005)


def test_model_route_series_and_chart_points(monitor: ServiceThread, stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    base = (time.time_ns() // (30 * NS) - 2) * 30 * NS  # 30-60 s ago, on a 30 s (and 10 s) boundary
    provider = exporting_provider(monitor.target, "ferry-serve")
    serve = {"ferry.deployment": "churn", "ferry.model": "churn", "ferry.version": 3}
    method = "/inference.GRPCInferenceService/ModelInfer"
    emit_spans(
        provider, [2_000_000] * 30, name=method, end_ns=base + 1 * NS, attributes={**serve, "ferry.route": "primary"}
    )
    emit_spans(
        provider,
        [8_000_000] * 10,
        name=method,
        end_ns=base + 11 * NS,
        attributes={**serve, "ferry.route": "canary", "ferry.version": 4},
    )
    emit_spans(
        provider, [4_000_000] * 5, name=method, end_ns=base + 12 * NS, attributes={**serve, "ferry.route": "primary"}
    )
    assert provider.force_flush(30_000)
    provider.shutdown()
    span_window = window(base, base + 30 * NS)

    def count(**fields: object) -> int:
        request = pb.GetLatencySummaryRequest(filter=pb.SpanFilter(**fields), window=span_window)  # type: ignore[arg-type]
        return int(stub.GetLatencySummary(request, timeout=10).count)

    assert count(deployment="churn") == 45
    assert count(model="churn", route="canary") == 10
    assert count(model="churn", version=3) == 35
    assert count(model="churn", version=4, route="primary") == 0
    assert count(service="ferry-serve", method=method) == 45

    series = stub.ListLatencySeries(
        pb.ListLatencySeriesRequest(
            filter=pb.SpanFilter(deployment="churn"), window=span_window, step=duration_pb2.Duration(seconds=10)
        ),
        timeout=10,
    )
    assert [point.start_time.ToNanoseconds() for point in series.points] == [base, base + 10 * NS, base + 20 * NS]
    assert [point.summary.count for point in series.points] == [30, 15, 0]
    assert series.points[1].summary.max_ms == pytest.approx(8.0)
    assert series.points[0].summary.p99_ms == pytest.approx(2.0, rel=0.005)
    wide = stub.ListLatencySeries(
        pb.ListLatencySeriesRequest(
            filter=pb.SpanFilter(deployment="churn"), window=span_window, step=duration_pb2.Duration(seconds=30)
        ),
        timeout=10,
    )
    assert [point.summary.count for point in wide.points] == [45]


def otlp_span(
    trace_id: bytes, span_id: bytes, *, parent: bytes = b"", name: str = "op", start: int = 0, end: int = 0
) -> trace_pb2.Span:
    now = time.time_ns()
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start or now - 1_000_000,
        end_time_unix_nano=end or now,
        attributes=[common_pb2.KeyValue(key="k", value=common_pb2.AnyValue(int_value=7))],
    )


def export(target: str, service: str, spans: list[trace_pb2.Span]) -> trace_service_pb2.ExportTraceServiceResponse:
    resource = resource_pb2.Resource(
        attributes=[common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))]
    )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )
    with grpc.insecure_channel(target) as channel:
        response: trace_service_pb2.ExportTraceServiceResponse = trace_service_pb2_grpc.TraceServiceStub(
            channel
        ).Export(request, timeout=10)
        return response


def test_malformed_spans_are_rejected_alone(monitor: ServiceThread, stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    now = time.time_ns()
    good = [otlp_span(trace_id, bytes([1] * 8)), otlp_span(trace_id, bytes([2] * 8), parent=bytes([1] * 8))]
    bad = [
        otlp_span(b"\x01" * 15, bytes([3] * 8)),  # short trace id
        otlp_span(trace_id, bytes(8)),  # zero span id
        otlp_span(trace_id, bytes([4] * 8), start=now, end=now - 1),  # ends before it starts
        otlp_span(trace_id, bytes([5] * 8), name=""),
        otlp_span(trace_id, bytes([6] * 8), start=now - 10 * 86_400 * NS, end=now - 10 * 86_400 * NS + 1),  # expired
        otlp_span(trace_id, bytes([7] * 8), start=now + 3600 * NS, end=now + 3601 * NS),  # future
    ]
    response = export(monitor.target, "svc-raw", [bad[0], good[0], *bad[1:], good[1]])
    assert response.partial_success.rejected_spans == len(bad)
    message = response.partial_success.error_message
    assert "6 span(s) rejected" in message and "trace_id of 15 bytes" in message
    assert "resource_spans[0].scope_spans[0].spans[0]" in message

    summary = stub.GetLatencySummary(
        pb.GetLatencySummaryRequest(
            filter=pb.SpanFilter(service="svc-raw"), window=window(now - 60 * NS, now + 60 * NS)
        ),
        timeout=10,
    )
    assert summary.count == 2  # a root span and a SERVER child: both count
    trace = stub.GetTrace(pb.GetTraceRequest(trace_id=trace_id.hex()), timeout=10)
    assert [span.span_id for span in trace.spans] == [bytes([1] * 8).hex(), bytes([2] * 8).hex()]
    assert trace.spans[1].parent_span_id == bytes([1] * 8).hex()
    assert trace.spans[0].service == "svc-raw" and trace.spans[0].attributes["k"] == "7"

    # The same spans again (an exporter's retry): the trace keeps each span once.
    assert export(monitor.target, "svc-raw", good).partial_success.rejected_spans == 0
    assert len(stub.GetTrace(pb.GetTraceRequest(trace_id=trace_id.hex()), timeout=10).spans) == 2


def test_get_trace_across_two_services(monitor: ServiceThread, stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    front = exporting_provider(monitor.target, "front")
    back = exporting_provider(monitor.target, "back")
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    front_tracer, back_tracer = front.get_tracer("t"), back.get_tracer("t")
    with (
        front_tracer.start_as_current_span("/front.v1.Front/Call", kind=trace.SpanKind.SERVER) as root,
        front_tracer.start_as_current_span("/back.v1.Back/Get", kind=trace.SpanKind.CLIENT),
    ):
        # What a gRPC call carries to the other process: the W3C traceparent header.
        TraceContextTextMapPropagator().inject(carrier)
        context = TraceContextTextMapPropagator().extract(carrier)
        with back_tracer.start_as_current_span("/back.v1.Back/Get", context=context, kind=trace.SpanKind.SERVER):
            pass
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert front.force_flush(30_000) and back.force_flush(30_000)
    front.shutdown()
    back.shutdown()
    got = stub.GetTrace(pb.GetTraceRequest(trace_id=trace_id.upper()), timeout=10)
    assert got.trace_id == trace_id
    assert [(span.service, span.name) for span in got.spans] == [
        ("front", "/front.v1.Front/Call"),
        ("front", "/back.v1.Back/Get"),
        ("back", "/back.v1.Back/Get"),
    ]
    assert got.spans[2].parent_span_id == got.spans[1].span_id


def test_bad_input_names_the_field(stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    now = time.time_ns()
    cases: list[tuple[object, object, str, grpc.StatusCode]] = [
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(filter=pb.SpanFilter(version=-1)),
            "filter.version",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(filter=pb.SpanFilter(route="blue")),
            "filter.route",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(filter=pb.SpanFilter(model="Not An Id")),
            "filter.model",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(filter=pb.SpanFilter(deployment="-x")),
            "filter.deployment",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(filter=pb.SpanFilter(service="a\nb")),
            "filter.service",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(window=window(now, now - NS)),
            "window.start_time",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(window=pb.TimeWindow(end_time=timestamp_pb2.Timestamp(seconds=1, nanos=-5))),
            "window.end_time",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetLatencySummary,
            pb.GetLatencySummaryRequest(window=pb.TimeWindow(end_time=timestamp_pb2.Timestamp(seconds=-9_223_371_737))),
            "window.end_time",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.ListLatencySeries,
            pb.ListLatencySeriesRequest(step=duration_pb2.Duration(seconds=15)),
            "step",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.ListLatencySeries,
            pb.ListLatencySeriesRequest(step=duration_pb2.Duration(nanos=5)),
            "step",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.ListLatencySeries,
            pb.ListLatencySeriesRequest(window=window(now - 86_400 * NS, now)),  # 8,640 points of 10 s
            "step",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (stub.GetTrace, pb.GetTraceRequest(trace_id="xyz"), "trace_id", grpc.StatusCode.INVALID_ARGUMENT),
        (stub.GetTrace, pb.GetTraceRequest(trace_id="0" * 32), "trace_id", grpc.StatusCode.INVALID_ARGUMENT),
        (stub.GetTrace, pb.GetTraceRequest(trace_id="ab" * 16), "trace_id", grpc.StatusCode.NOT_FOUND),
    ]
    for method, request, field, code in cases:
        with pytest.raises(grpc.RpcError) as raised:
            method(request, timeout=10)  # type: ignore[operator]
        assert raised.value.code() is code, (field, raised.value.details())
        assert field_of(raised.value) == field, raised.value.details()
        assert field in (raised.value.details() or "")


def test_drift_and_policy_rpcs_check_their_form_first(stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    # Service-level drift tests (with a registry and ingest) are in test_drift.py.
    cases = [
        (stub.GetDriftReport, pb.GetDriftReportRequest(), "model_version"),
        (stub.SetModelPolicy, pb.SetModelPolicyRequest(), "policy"),
        (stub.GetModelPolicy, pb.GetModelPolicyRequest(name="models/x"), "name"),
    ]
    for method, request, field in cases:
        with pytest.raises(grpc.RpcError) as raised:
            method(request, timeout=10)  # type: ignore[operator]
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        assert field_of(raised.value) == field


def test_sdk_client_reads_latency_and_traces(monitor: ServiceThread) -> None:
    import asyncio
    import datetime

    from ferry_sdk import errors
    from ferry_sdk.aio import MonitorClient

    now = time.time_ns()
    provider = exporting_provider(monitor.target, "sdk-svc")
    emit_spans(provider, [3_000_000] * 12, end_ns=now)
    assert provider.force_flush(30_000)
    provider.shutdown()
    end = datetime.datetime.fromtimestamp(now / NS + 60, tz=datetime.UTC)

    async def run() -> None:
        async with MonitorClient(monitor.target) as client:
            summary = await client.get_latency_summary(pb.SpanFilter(service="sdk-svc"), end=end)
            assert summary.count == 12 and summary.p50_ms == pytest.approx(3.0, rel=0.005)
            points = await client.list_latency_series(
                pb.SpanFilter(service="sdk-svc"), end=end, step=datetime.timedelta(minutes=1)
            )
            assert sum(point.summary.count for point in points) == 12
            with pytest.raises(errors.InvalidArgument) as raised:
                await client.get_trace("nope")
            assert raised.value.field == "trace_id"
            with pytest.raises(errors.NotFound):
                await client.get_trace("ab" * 16)

    asyncio.run(run())
