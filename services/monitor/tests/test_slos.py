"""SLOs and alerts through gRPC, on in-process servers with the real interceptors.

Spans are sent by the OpenTelemetry SDK's own ``OTLPSpanExporter``; the evaluator runs
every second (``FERRY_MONITOR_SLO_EVALUATE_SECONDS=1``). The canary action is checked
against an in-process ``ServeService`` that records the UpdateDeployment it receives
(a real serve process is not started here).
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry.serve.v1 import serve_pb2, serve_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings
from ferry_monitor.__main__ import build
from ferry_monitor.testing import emit_spans, exporting_provider
from ferry_sdk import aio
from ferry_sdk._watch import Backoff

CANARY = {"ferry.deployment": "iris", "ferry.model": "iris", "ferry.version": 2, "ferry.route": "canary"}


class RecordingServe(serve_pb2_grpc.ServeServiceServicer):
    """Serve's contract, recording the UpdateDeployment calls it answers."""

    def __init__(self) -> None:
        self.updates: list[serve_pb2.UpdateDeploymentRequest] = []
        self.updated = threading.Event()

    def UpdateDeployment(self, request: serve_pb2.UpdateDeploymentRequest, context: Any) -> serve_pb2.Deployment:
        self.updates.append(request)
        self.updated.set()
        return request.deployment


@pytest.fixture
def serve() -> Iterator[tuple[RecordingServe, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    recorder = RecordingServe()
    serve_pb2_grpc.add_ServeServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield recorder, port
    server.stop(0)


def monitor_at(state: pathlib.Path, serve_port: int, address: str = "127.0.0.1:0") -> ServiceThread:
    env = {"FERRY_MONITOR_SLO_EVALUATE_SECONDS": "1", "FERRY_SERVE_ADDRESS": f"127.0.0.1:{serve_port}"}
    return ServiceThread(test_settings("monitor", state, env), build, address)


def field_of(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    return str(detail.field_violations[0].field)


def slo(route: str = "canary", threshold_ms: float = 50.0, action: int = pb.BREACH_ACTION_STOP_CANARY) -> pb.Slo:
    return pb.Slo(
        filter=pb.SpanFilter(deployment="iris", route=route),
        percentile=99,
        latency_threshold_ms=threshold_ms,
        window=duration_pb2.Duration(seconds=60),
        min_count=10,
        action=action,
    )


def wait_alerts(stub: monitor_pb2_grpc.MonitorServiceStub, count: int, timeout: float = 20) -> list[pb.Alert]:
    deadline = time.monotonic() + timeout
    while True:
        alerts = list(stub.ListAlerts(pb.ListAlertsRequest(page_size=1000), timeout=5).alerts)
        if len(alerts) >= count or time.monotonic() > deadline:
            return alerts
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"percentile": 0}, "slo.percentile"),
        ({"percentile": 100}, "slo.percentile"),
        ({"percentile": 150}, "slo.percentile"),
        ({"window": duration_pb2.Duration(seconds=-5)}, "slo.window"),
        ({"window": duration_pb2.Duration(seconds=0)}, "slo.window"),
        ({"max_error_rate": 1.5}, "slo.max_error_rate"),
        ({"latency_threshold_ms": 0}, "slo.latency_threshold_ms"),
        ({"filter": pb.SpanFilter(deployment="iris", route="primary")}, "slo.filter.route"),
    ],
)
def test_bad_slos_name_the_field(tmp_path: pathlib.Path, change: dict[str, Any], field: str) -> None:
    with monitor_at(tmp_path, 1) as monitor, monitor.channel() as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        message = slo()
        for key, value in change.items():
            if isinstance(value, int | float):
                setattr(message, key, value)
            else:
                getattr(message, key).CopyFrom(value)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SetSlo(pb.SetSloRequest(slo_id="p99", slo=message), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_of(caught.value) == field


def test_canary_breach_alerts_once_stops_the_canary_and_survives_a_restart(
    tmp_path: pathlib.Path, serve: tuple[RecordingServe, int]
) -> None:
    recorder, port = serve
    with monitor_at(tmp_path, port) as monitor, monitor.channel() as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        created = stub.SetSlo(pb.SetSloRequest(slo_id="canary-p99", slo=slo()), timeout=5)
        assert created.name == "slos/canary-p99" and not created.breached
        # A second, alert-only objective on the primary route that stays within its threshold.
        stub.SetSlo(
            pb.SetSloRequest(slo_id="primary-p99", slo=slo("primary", action=pb.BREACH_ACTION_ALERT)), timeout=5
        )
        provider = exporting_provider(monitor.target, "serve")
        emit_spans(provider, [120_000_000] * 30, name="/inference.GRPCInferenceService/ModelInfer", attributes=CANARY)
        emit_spans(
            provider,
            [5_000_000] * 30,
            name="/inference.GRPCInferenceService/ModelInfer",
            attributes={**CANARY, "ferry.route": "primary"},
        )
        assert provider.force_flush(30_000)
        provider.shutdown()

        (alert,) = wait_alerts(stub, 1)
        assert alert.sequence == 1 and alert.name == "alerts/1"
        assert alert.kind == pb.ALERT_KIND_SLO_BREACH
        assert alert.slo == "slos/canary-p99" and alert.deployment == "deployments/iris"
        assert "p99 latency" in alert.message
        assert alert.action == pb.BREACH_ACTION_STOP_CANARY
        assert alert.action_result == "deployments/iris: canary set to 0%"
        assert recorder.updated.wait(5)
        (update,) = recorder.updates
        assert update.deployment.name == "deployments/iris"
        assert list(update.update_mask.paths) == ["canary.percent"] and update.deployment.canary.percent == 0

        time.sleep(2.5)  # more evaluations: the breach persists, no second alert
        assert len(wait_alerts(stub, 2, timeout=0)) == 1
        slos = {s.name: s for s in stub.ListSlos(pb.ListSlosRequest(), timeout=5).slos}
        assert slos["slos/canary-p99"].breached and not slos["slos/primary-p99"].breached

    with monitor_at(tmp_path, port) as monitor, monitor.channel() as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        slos = {s.name: s for s in stub.ListSlos(pb.ListSlosRequest(), timeout=5).slos}
        assert set(slos) == {"slos/canary-p99", "slos/primary-p99"}
        assert slos["slos/canary-p99"].breached
        assert slos["slos/canary-p99"].window.seconds == 60 and slos["slos/canary-p99"].percentile == 99
        time.sleep(2.5)  # evaluations after the restart: still the one alert
        alerts = wait_alerts(stub, 2, timeout=0)
        assert [a.sequence for a in alerts] == [1] and alerts[0].action_result == alert.action_result
        assert len(recorder.updates) == 1


def test_failed_canary_action_is_recorded_and_alerts_resume_by_sequence(tmp_path: pathlib.Path) -> None:
    # Nothing listens on port 1: serve is unreachable and the alert says so.
    with monitor_at(tmp_path, 1) as monitor, monitor.channel() as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        for index in range(3):
            stub.SetSlo(pb.SetSloRequest(slo_id=f"slo-{index}", slo=slo()), timeout=5)
        provider = exporting_provider(monitor.target, "serve")
        emit_spans(provider, [200_000_000] * 20, attributes=CANARY)
        assert provider.force_flush(30_000)
        provider.shutdown()
        alerts = wait_alerts(stub, 3, timeout=30)
        assert [a.sequence for a in alerts] == [1, 2, 3]
        assert all(a.action_result.startswith("error: ") and "UNAVAILABLE" in a.action_result for a in alerts)

        first = stub.ListAlerts(pb.ListAlertsRequest(page_size=2), timeout=5)
        assert [a.sequence for a in first.alerts] == [1, 2] and first.next_page_token
        rest = stub.ListAlerts(pb.ListAlertsRequest(page_size=2, page_token=first.next_page_token), timeout=5)
        assert [a.sequence for a in rest.alerts] == [3] and not rest.next_page_token

        with pytest.raises(grpc.RpcError) as caught:
            next(stub.WatchAlerts(pb.WatchAlertsRequest(since_sequence=-1), timeout=5))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(caught.value) == "since_sequence"

        stream = stub.WatchAlerts(pb.WatchAlertsRequest(since_sequence=1), timeout=10)
        assert [next(stream).sequence, next(stream).sequence] == [2, 3]
        stream.cancel()

        # A new alert reaches an open watch; the stream ends when monitor drains.
        stream = stub.WatchAlerts(pb.WatchAlertsRequest(since_sequence=3), timeout=30)
        stub.SetSlo(pb.SetSloRequest(slo_id="slo-0", slo=slo(threshold_ms=60)), timeout=5)  # re-armed
        assert next(stream).sequence == 4
        monitor.stop()
        assert list(stream) == []


def test_sdk_watch_resumes_by_sequence_across_a_monitor_restart(tmp_path: pathlib.Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"

    def breach(monitor: ServiceThread, slo_id: str) -> None:
        with monitor.channel() as channel:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            stub.SetSlo(pb.SetSloRequest(slo_id=slo_id, slo=slo(action=pb.BREACH_ACTION_ALERT)), timeout=5)
        provider = exporting_provider(monitor.target, "serve")
        emit_spans(provider, [200_000_000] * 20, attributes=CANARY)
        assert provider.force_flush(30_000)
        provider.shutdown()

    first = monitor_at(tmp_path, 1, address)
    first.start()
    breach(first, "before")

    async def run() -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []
        async with aio.MonitorClient(address) as client:
            slos = [slo.name async for slo in client.list_slos()]
            assert slos == ["slos/before"]
            watch = client.watch_alerts(backoff=Backoff(initial=0.1, maximum=0.5, give_up_after=60))
            async for alert in watch:
                seen.append((alert.sequence, alert.slo))
                if alert.sequence == 1:
                    # Monitor drains (the stream ends) and comes back on the same port.
                    await asyncio.to_thread(first.stop)
                    second = monitor_at(tmp_path, 1, address)
                    await asyncio.to_thread(second.start)
                    await asyncio.to_thread(breach, second, "after")
                if alert.sequence == 2:
                    watch.cancel()
                    listed = [a.sequence async for a in client.list_alerts(page_size=1)]
                    assert listed == [1, 2]
                    await asyncio.to_thread(second.stop)
        return seen

    assert asyncio.run(asyncio.wait_for(run(), 60)) == [(1, "slos/before"), (2, "slos/after")]
