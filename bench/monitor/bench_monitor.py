"""Monitor: OTLP spans/s accepted against a bare receiver, and GetLatencySummary latency.

Starts ``ferry-monitor`` as a real subprocess (``ferry_sdk.spawn_and_wait``, SQLite) and,
in the same run, a *bare receiver*: a ``grpc.aio`` server in its own process that answers
``TraceService/Export`` after decoding the request and nothing else (the floor of the
transport and protobuf decoding). One client process drives both the same way: ``--inflight``
Export calls in flight, each carrying the bytes of a prepared ``ExportTraceServiceRequest``
of ``--batch`` spans (what ``OTLPSpanExporter`` sends: serve-like SERVER spans with
``ferry.*`` attributes, ~2% errors, fresh timestamps). Pre-serialized requests keep the
client's own encoding out of the figure.

Then, with ``--summary-spans`` spans in the last five minutes, it times ``GetLatencySummary``
(the default 5-minute window, no filter and a deployment filter) sequentially.

    .venv/bin/python bench/monitor/bench_monitor.py [--seconds 10] [--summary-spans 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pathlib
import random
import sys
import tempfile
import time

import grpc
import grpc.aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_common.process import free_port, wait_port
from ferry_sdk import spawn_and_wait

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TARGET_RATIO = 0.5
TARGET_SPANS_PER_SECOND = 20_000
TARGET_SUMMARY_P99_MS = 20.0


# ---------------------------------------------------------------- the bare receiver


class _Bare(trace_service_pb2_grpc.TraceServiceServicer):
    async def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: object) -> object:
        return trace_service_pb2.ExportTraceServiceResponse()


def _serve_bare(port: int) -> None:
    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Bare(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


# ---------------------------------------------------------------- load


def _attr(key: str, **value: object) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))  # type: ignore[arg-type]


def make_request(batch: int, end_ns: int, rng: random.Random) -> bytes:
    spans = []
    for _ in range(batch):
        duration = int(rng.lognormvariate(15.0, 0.6))  # ~3 ms
        route, version = ("canary", 4) if rng.random() < 0.1 else ("primary", 3)
        span = trace_pb2.Span(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            name="/inference.GRPCInferenceService/ModelInfer",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=end_ns - duration,
            end_time_unix_nano=end_ns,
            attributes=[
                _attr("rpc.system", string_value="grpc"),
                _attr("rpc.service", string_value="inference.GRPCInferenceService"),
                _attr("rpc.method", string_value="ModelInfer"),
                _attr("ferry.deployment", string_value="churn"),
                _attr("ferry.model", string_value="churn"),
                _attr("ferry.version", int_value=version),
                _attr("ferry.route", string_value=route),
                _attr("ferry.request_id", string_value=rng.randbytes(8).hex()),
            ],
        )
        if rng.random() < 0.02:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        spans.append(span)
    resource = resource_pb2.Resource(attributes=[_attr("service.name", string_value="ferry-serve")])
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


async def drive(
    target: str, payloads: list[bytes], batch: int, inflight: int, seconds: float, limit: int
) -> tuple[int, float]:
    """Spans acknowledged and seconds taken: ``inflight`` senders until ``seconds`` pass or ``limit`` spans went."""
    sent = 0
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        started = time.perf_counter()
        deadline = started + seconds

        async def sender(index: int) -> None:
            nonlocal sent
            i = index
            while time.perf_counter() < deadline and sent < limit:
                response = trace_service_pb2.ExportTraceServiceResponse.FromString(
                    await call(payloads[i % len(payloads)], timeout=60)
                )
                if response.partial_success.rejected_spans:
                    raise RuntimeError(response.partial_success.error_message)
                sent += batch
                i += inflight

        await asyncio.gather(*(sender(i) for i in range(inflight)))
        return sent, time.perf_counter() - started


def summary_latencies(target: str, calls: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"all": [], "deployment": []}
    with grpc.insecure_channel(target) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        for _ in range(calls):
            for label, span_filter in (("all", pb.SpanFilter()), ("deployment", pb.SpanFilter(deployment="churn"))):
                started = time.perf_counter()
                stub.GetLatencySummary(pb.GetLatencySummaryRequest(filter=span_filter), timeout=30)
                found[label].append((time.perf_counter() - started) * 1000)
    return found


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--batch", type=int, default=512, help="spans per Export (the SDK's default batch)")
    parser.add_argument("--inflight", type=int, default=8, help="Export calls in flight")
    parser.add_argument("--summary-spans", type=int, default=1_000_000, help="spans in the window for the summary")
    parser.add_argument("--summary-calls", type=int, default=200)
    args = parser.parse_args()

    rng = random.Random(5)
    now = time.time_ns()
    payloads = [make_request(args.batch, now - rng.randrange(0, 60) * 1_000_000_000, rng) for _ in range(64)]

    bare_port = free_port()
    bare = multiprocessing.get_context("spawn").Process(target=_serve_bare, args=(bare_port,), daemon=True)
    bare.start()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="ferry-bench-monitor-") as state:
        env = {"FERRY_STATE_DIR": state, "OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_LEVEL": "warning"}
        with spawn_and_wait("monitor", env=env, cwd=state, log_path=pathlib.Path(state) / "monitor.log") as monitor:
            wait_port(bare_port, timeout=30)
            limit = sys.maxsize
            bare_spans, bare_s = asyncio.run(
                drive(f"127.0.0.1:{bare_port}", payloads, args.batch, args.inflight, args.seconds, limit)
            )
            mon_spans, mon_s = asyncio.run(
                drive(monitor.address, payloads, args.batch, args.inflight, args.seconds, limit)
            )
            bare_rate, mon_rate = bare_spans / bare_s, mon_spans / mon_s
            ratio = mon_rate / bare_rate
            ok = ratio >= TARGET_RATIO and mon_rate >= TARGET_SPANS_PER_SECOND
            rows.append(("bare receiver (decode, drop)", f"{bare_rate:,.0f} spans/s", "1.00", ""))
            rows.append(
                (
                    "ferry-monitor Export (committed)",
                    f"{mon_rate:,.0f} spans/s",
                    f"{ratio:.2f}",
                    f">= {TARGET_RATIO} and >= {TARGET_SPANS_PER_SECOND:,}/s: {'met' if ok else 'MISSED'}",
                )
            )
            # Fill the window up to --summary-spans (fresh timestamps: within the default 5 minutes).
            remaining = args.summary_spans - mon_spans
            if remaining > 0:
                asyncio.run(drive(monitor.address, payloads, args.batch, args.inflight, 3600, remaining))
            in_window = max(args.summary_spans, mon_spans)
            times = summary_latencies(monitor.address, args.summary_calls)
            for label, values in times.items():
                p99 = p(values, 0.99)
                rows.append(
                    (
                        f"GetLatencySummary ({label}, ~{in_window:,} spans in window)",
                        f"p50 {p(values, 0.5):.2f} ms, p99 {p99:.2f} ms",
                        "",
                        f"p99 <= {TARGET_SUMMARY_P99_MS:g} ms: {'met' if p99 <= TARGET_SUMMARY_P99_MS else 'MISSED'}",
                    )
                )
    bare.terminate()
    bare.join(10)
    print(
        f"\nmonitor OTLP ingest: batch {args.batch} spans, {args.inflight} in flight, {args.seconds:g} s per run, "
        f"{os.cpu_count()} CPUs\n"
    )
    widths = [max(len(row[i]) for row in [("workload", "result", "ratio", "target"), *rows]) for i in range(4)]
    for row in [("workload", "result", "ratio", "target"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
