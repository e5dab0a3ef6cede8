"""Property-based fuzzing of every MonitorService RPC, and of the OTLP receiver, through a real server.

One ``ferry-monitor`` process per module (its real ``main()``: the ``grpc.aio`` server with
the real interceptors, on a free port, a SQLite file), restarted when a call crashes it,
and talked to through the generated stubs. It is seeded with spans (so summaries, series
and a trace have something to merge) and with inference records of ``models/iris/versions/1``
(so feedback and performance reach the store).

Whatever the request (see :mod:`ferry_common.fuzzing`): the status is never INTERNAL or
UNKNOWN and the call does not hang; the message fits in the client's trailers; the server
still answers afterwards; a RecordInferences or RecordFeedback that fails leaves the
performance of the seeded versions as it was. Export gets hypothesis-built OTLP batches: whatever
they hold, the call succeeds
(bad spans are rejected alone, in ``partial_success``) or fails with a clean status.

Budgets: 30 examples per RPC, derandomized, in ``make test``; ``pytest -m fuzz`` runs the
big budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_common import fuzzing
from ferry_common.fuzzing import Call, Field, ids, messages
from ferry_monitor.testing import emit_spans, exporting_provider

pytestmark = pytest.mark.xdist_group("fuzz-monitor")

SERVICE = pb.DESCRIPTOR.services_by_name["MonitorService"]
EXPORT = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].methods_by_name["Export"]
MUTATING = {"RecordInferences", "RecordFeedback"}
SEEDED_VERSIONS = ("models/iris/versions/1", "models/iris/versions/2")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"

TEXT = Field(st.sampled_from(("", "ferry-serve", "/inference.GRPCInferenceService/ModelInfer")), fuzzing.nasty_text())
ROUTE = Field(st.sampled_from(("", "primary", "canary", "shadow")), fuzzing.nasty_text())
MODEL = Field(st.sampled_from(("", "iris")), ids(("iris",)))
VERSION_NAME = Field(
    st.sampled_from(SEEDED_VERSIONS),
    fuzzing.resource_names(
        "models/{model}/versions/{version}", model=ids(("iris",)), version=fuzzing.version_segments(("1", "2"))
    ),
)
POLICY_NAME = Field(
    st.sampled_from(("policies/iris",)), fuzzing.resource_names("policies/{model}", model=ids(("iris",)))
)
FILTER = {
    "filter.service": TEXT,
    "filter.method": TEXT,
    "filter.model": MODEL,
    "filter.deployment": MODEL,
    "filter.route": ROUTE,
}


def _record(request_id: str, version: int, label: str) -> pb.InferenceRecord:
    outputs = struct_pb2.Struct()
    outputs.update({"label": [label]})
    return pb.InferenceRecord(
        request_id=request_id,
        deployment="deployments/iris",
        model_version=f"models/iris/versions/{version}",
        route="primary",
        outputs=outputs,
        latency_ms=1.0,
    )


RECORD = st.builds(
    _record,
    st.one_of(st.sampled_from(("seed-1", "seed-2", "new")), fuzzing.nasty_text()),
    st.sampled_from((1, 2)),
    st.sampled_from(("setosa", "virginica")),
)

REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "GetLatencySummary": messages(pb.GetLatencySummaryRequest, FILTER),
    "ListLatencySeries": messages(pb.ListLatencySeriesRequest, FILTER),
    "GetTrace": messages(
        pb.GetTraceRequest, {"trace_id": Field(st.sampled_from((TRACE_ID, "ab" * 16)), fuzzing.nasty_text())}
    ),
    "RecordInferences": messages(
        pb.RecordInferencesRequest, {"records": Field(st.lists(RECORD, max_size=3), st.lists(RECORD, max_size=3))}
    ),
    "RecordFeedback": messages(
        pb.RecordFeedbackRequest,
        {
            "feedback": Field(
                st.lists(
                    st.builds(
                        lambda rid, label: pb.Feedback(
                            request_id=rid, ground_truth=struct_pb2.Value(string_value=label)
                        ),
                        st.sampled_from(("seed-1", "seed-2", "ghost")),
                        st.sampled_from(("setosa", "virginica")),
                    ),
                    max_size=3,
                ),
                st.just([]),
            )
        },
    ),
    "GetPerformance": messages(pb.GetPerformanceRequest, {"model_version": VERSION_NAME, "route": ROUTE}),
    "SetSlo": messages(pb.SetSloRequest),
    "ListSlos": messages(pb.ListSlosRequest),
    "ListAlerts": messages(pb.ListAlertsRequest),
    "WatchAlerts": messages(pb.WatchAlertsRequest),
    # The registry is unreachable here (drift and policies answer UNAVAILABLE once the form
    # is right): what is fuzzed is the parsing of every field.
    "GetDriftReport": messages(pb.GetDriftReportRequest, {"model_version": VERSION_NAME}),
    "SetModelPolicy": messages(pb.SetModelPolicyRequest, {"policy.name": POLICY_NAME}),
    "GetModelPolicy": messages(pb.GetModelPolicyRequest, {"name": POLICY_NAME}),
}
CALLS, SWEEP_EXTRA = fuzzing.call_tables(REQUESTS, {})
NAMES = {
    "ferry.monitor.v1.PerformanceReport.model_version": "models/{model}/versions/{version}",
    "ferry.monitor.v1.DriftReport.model_version": "models/{model}/versions/{version}",
    "ferry.monitor.v1.ModelPolicy.name": "policies/{model}",
}


class FuzzedMonitor(fuzzing.FuzzedService):
    stub_class = monitor_pb2_grpc.MonitorServiceStub

    def connect(self) -> None:
        super().connect()
        self.traces = trace_service_pb2_grpc.TraceServiceStub(self.channel)

    def probe(self) -> None:
        self.stub.GetLatencySummary(pb.GetLatencySummaryRequest(), timeout=10)

    def seed(self) -> None:
        self.stub.RecordInferences(
            pb.RecordInferencesRequest(records=[_record("seed-1", 1, "setosa"), _record("seed-2", 2, "setosa")]),
            timeout=30,
        )
        provider = exporting_provider(self.server.target, "fuzz-seed")
        emit_spans(provider, [1_000_000, 2_000_000, 3_000_000], end_ns=time.time_ns())
        assert provider.force_flush(30_000)
        provider.shutdown()
        self.dirty = False

    def _read(self, part: str) -> Any:
        request = pb.GetPerformanceRequest(model_version=part)
        return self.stub.GetPerformance(request, timeout=30).SerializeToString(deterministic=True)

    def check(self, call: Call) -> None:
        if self.dirty:
            self.seed()
            self.visible.forget()
        mutating = call.rpc in MUTATING
        before = self.visible.take(SEEDED_VERSIONS if mutating else [])
        mark = self.server.log_mark()
        watch = call.rpc == "WatchAlerts"
        # A watch never ends by itself: a short deadline, and DEADLINE_EXCEEDED is its normal end.
        outcome = fuzzing.call_rpc(
            self.stub, SERVICE.methods_by_name[call.rpc], call.request, timeout=2 if watch else 30
        )
        try:
            self.check_alive(outcome)
            fuzzing.check_outcome(outcome, allow_deadline=watch, server_errors=lambda: self.server.errors_since(mark))
            if outcome.code is grpc.StatusCode.OK:
                fuzzing.check_names(outcome, NAMES)
            elif mutating:
                self.visible.check_unchanged(before, outcome)
        finally:
            if mutating:
                self.visible.forget()

    def export(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        mark = self.server.log_mark()
        outcome = fuzzing.call_rpc(self.traces, EXPORT, request, timeout=30)
        self.check_alive(outcome)
        fuzzing.check_outcome(outcome, server_errors=lambda: self.server.errors_since(mark))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedMonitor]:
    root = tmp_path_factory.mktemp("monitor-fuzz")
    # Nothing listens on the discard port: drift's registry/ingest/train calls fail fast.
    unreachable = "127.0.0.1:9"
    env = {
        "FERRY_STATE_DIR": str(root),
        "FERRY_LOG_LEVEL": "warning",
        "FERRY_REGISTRY_ADDRESS": unreachable,
        "FERRY_INGEST_ADDRESS": unreachable,
        "FERRY_TRAIN_ADDRESS": unreachable,
    }
    server = fuzzing.ServerProcess("ferry_monitor", "monitor", env, root / "server.log")
    server.start()
    try:
        monitor = FuzzedMonitor(server, root / "objects", lambda part: None)
        monitor.visible = fuzzing.VisibleState(monitor._read)
        monitor.seed()
        yield monitor
        monitor.close()
    finally:
        server.stop()


globals().update(fuzzing.rpc_tests(CALLS, SERVICE.methods_by_name, SWEEP_EXTRA))


@fuzzing.fuzz_settings(big=False)
@given(request=messages(trace_service_pb2.ExportTraceServiceRequest, max_depth=6))
def test_any_otlp_batch_gets_a_clean_status(fuzzed: FuzzedMonitor, request: Any) -> None:
    fuzzed.export(request)
