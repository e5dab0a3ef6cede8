"""Monitor behind a real serve (and its embedded Triton): serve's spans and samples arrive unchanged.

``ferry-registry``, ``ferry-serve`` and ``ferry-monitor`` run as processes; serve exports its
spans to monitor (its default: ``FERRY_MONITOR_ADDRESS``) and sends its inference samples
with ``RecordInferences``. The test sends ModelInfer calls with request ids, then gives
feedback by those ids and reads latency and accuracy for the deployment's version. A
second test breaches a canary SLO and finds serve's canary at 0 %.
"""

from __future__ import annotations

import functools
import pathlib

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import duration_pb2, struct_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry.serve.v1 import serve_pb2, serve_pb2_grpc
from ferry_common import testing
from ferry_monitor.testing import emit_spans, exporting_provider
from ferry_sdk import RegistryClient
from ferry_sdk.spawn import free_port, spawn_and_wait, stop_all
from ferry_serve.testing import TINY_SIGNATURE, tiny_classifier

pytestmark = pytest.mark.xdist_group("triton")

X = np.array([[0.5], [-2.0]], dtype=np.float32)
COLOR = np.array([[b"red"], [b"green"]], dtype=np.object_)
CALLS = 20
eventually = functools.partial(testing.eventually, interval=0.2)


@pytest.mark.slow
def test_serve_spans_and_samples_feed_latency_and_accuracy(tmp_path: pathlib.Path) -> None:
    common = {
        "FERRY_REGISTRY_ADDRESS": f"127.0.0.1:{free_port()}",
        "FERRY_MONITOR_ADDRESS": f"127.0.0.1:{free_port()}",
        "FERRY_SERVE_POLL_MS": "100",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "FERRY_LOG_LEVEL": "warning",
    }
    started = []
    try:
        for name in ("monitor", "registry", "serve"):
            env = {**common, "FERRY_STATE_DIR": str(tmp_path / name)}
            if name != "serve":
                env["OTEL_TRACES_EXPORTER"] = "none"  # only serve's spans, so counts are serve's
            started.append(spawn_and_wait(name, env=env, log_path=tmp_path / f"{name}.log", timeout=120))
        monitor, registry, serve = started
        with RegistryClient(registry.address) as client:
            client.create_model("iris")
            client.upload_model_version("iris", tiny_classifier(), format="onnx", signature=TINY_SIGNATURE)
            client.set_alias("models/iris/aliases/production", 1)
        with grpc.insecure_channel(serve.address) as channel:
            created = serve_pb2_grpc.ServeServiceStub(channel).CreateDeployment(
                serve_pb2.CreateDeploymentRequest(deployment=serve_pb2.Deployment(model="models/iris")), timeout=120
            )
        assert created.state == serve_pb2.Deployment.STATE_READY, created.message

        labels: list[list[str]] = []
        with grpcclient.InferenceServerClient(serve.address) as triton:
            for i in range(CALLS):
                inputs = [grpcclient.InferInput("x", [2, 1], "FP32"), grpcclient.InferInput("color", [2, 1], "BYTES")]
                inputs[0].set_data_from_numpy(X)
                inputs[1].set_data_from_numpy(COLOR)
                result = triton.infer("iris", inputs, request_id=f"req-{i}", client_timeout=30)
                labels.append([value.decode() for value in result.as_numpy("label").reshape(-1)])

        with grpc.insecure_channel(monitor.address) as channel:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            primary = pb.SpanFilter(deployment="iris", model="iris", version=1, route="primary")

            def summary() -> pb.LatencySummary | None:
                found: pb.LatencySummary = stub.GetLatencySummary(
                    pb.GetLatencySummaryRequest(filter=primary), timeout=10
                )
                return found if found.count >= CALLS else None

            latency = eventually(summary, "serve's ModelInfer spans")
            assert (latency.count, latency.error_count) == (CALLS, 0)
            assert 0 < latency.p50_ms <= latency.p99_ms <= latency.max_ms
            by_method = stub.GetLatencySummary(
                pb.GetLatencySummaryRequest(
                    filter=pb.SpanFilter(service="ferry-serve", method="/inference.GRPCInferenceService/ModelInfer")
                ),
                timeout=10,
            )
            assert by_method.count == CALLS

            # Ground truth: row 0 as the model answered, row 1 always wrong: accuracy 1/2.
            def truth(i: int) -> pb.Feedback:
                value = struct_pb2.Value()
                value.list_value.extend([labels[i][0], "not-" + labels[i][1]])
                return pb.Feedback(request_id=f"req-{i}", ground_truth=value)

            def feedback() -> pb.RecordFeedbackResponse | None:
                answer: pb.RecordFeedbackResponse = stub.RecordFeedback(
                    pb.RecordFeedbackRequest(feedback=[truth(i) for i in range(CALLS)]), timeout=10
                )
                return answer if answer.accepted_count == CALLS else None

            answered = eventually(feedback, "serve's samples")
            assert not answered.unknown_request_ids
            report = stub.GetPerformance(
                pb.GetPerformanceRequest(model_version="models/iris/versions/1", route="primary"), timeout=10
            )
            assert (report.labeled_count, report.accuracy) == (2 * CALLS, 0.5)
    finally:
        stop_all(started)


@pytest.mark.slow
def test_canary_slo_breach_sets_the_canary_of_a_real_serve_to_zero(tmp_path: pathlib.Path) -> None:
    common = {
        "FERRY_REGISTRY_ADDRESS": f"127.0.0.1:{free_port()}",
        "FERRY_MONITOR_ADDRESS": f"127.0.0.1:{free_port()}",
        "FERRY_SERVE_ADDRESS": f"127.0.0.1:{free_port()}",
        "FERRY_MONITOR_SLO_EVALUATE_SECONDS": "1",
        "FERRY_SERVE_POLL_MS": "100",
        "OTEL_TRACES_EXPORTER": "none",
        "FERRY_LOG_LEVEL": "warning",
    }
    started = []
    try:
        for name in ("monitor", "registry", "serve"):
            env = {**common, "FERRY_STATE_DIR": str(tmp_path / name)}
            started.append(spawn_and_wait(name, env=env, log_path=tmp_path / f"{name}.log", timeout=120))
        monitor, registry, serve = started
        with RegistryClient(registry.address) as client:
            client.create_model("iris")
            for _ in range(2):
                client.upload_model_version("iris", tiny_classifier(), format="onnx", signature=TINY_SIGNATURE)
            client.set_alias("models/iris/aliases/production", 1)
        with grpc.insecure_channel(serve.address) as channel:
            serve_stub = serve_pb2_grpc.ServeServiceStub(channel)
            canary = serve_pb2.TrafficSplit(target=serve_pb2.TrafficTarget(version=2), percent=30)
            created = serve_stub.CreateDeployment(
                serve_pb2.CreateDeploymentRequest(deployment=serve_pb2.Deployment(model="models/iris", canary=canary)),
                timeout=120,
            )
            assert created.state == serve_pb2.Deployment.STATE_READY, created.message
            assert created.canary.percent == 30

            with grpc.insecure_channel(monitor.address) as monitor_channel:
                stub = monitor_pb2_grpc.MonitorServiceStub(monitor_channel)
                slo = pb.Slo(
                    filter=pb.SpanFilter(deployment="iris", route="canary"),
                    percentile=99,
                    latency_threshold_ms=50,
                    window=duration_pb2.Duration(seconds=60),
                    min_count=10,
                    action=pb.BREACH_ACTION_STOP_CANARY,
                )
                stub.SetSlo(pb.SetSloRequest(slo_id="canary-p99", slo=slo), timeout=10)
                provider = exporting_provider(monitor.address, "ferry-serve")
                attributes = {"ferry.deployment": "iris", "ferry.model": "iris", "ferry.version": 2}
                emit_spans(provider, [150_000_000] * 20, attributes={**attributes, "ferry.route": "canary"})
                assert provider.force_flush(30_000)
                provider.shutdown()

                def alerts() -> list[pb.Alert]:
                    return list(stub.ListAlerts(pb.ListAlertsRequest(), timeout=10).alerts)

                (alert,) = eventually(alerts, "the canary alert")
                assert alert.deployment == "deployments/iris", alert
                assert alert.action_result == "deployments/iris: canary set to 0%", alert

            after = serve_stub.GetDeployment(serve_pb2.GetDeploymentRequest(name="deployments/iris"), timeout=10)
            assert after.canary.percent == 0
            assert after.canary.target.version == 2  # only the share changed
    finally:
        stop_all(started)
