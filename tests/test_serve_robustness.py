"""Serve under the things that go wrong: alias moves under load, a killed Triton, a restarted
serve, two replicas on one PostgreSQL, shadows, and what monitor receives.

Real registry and serve processes, the real tritonserver. Monitor is not built yet, so a small
in-test gRPC server stands in for its two endpoints serve calls (``RecordInferences`` and
the OTLP ``TraceService/Export`` the real OpenTelemetry exporter sends to), recording what
arrives.
"""

from __future__ import annotations

import functools
import pathlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import field_mask_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from tritonclient.utils import InferenceServerException

from ferry.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_common import testing
from ferry_sdk import RegistryClient
from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all
from ferry_serve.testing import TINY_SIGNATURE as SIGNATURE
from ferry_serve.testing import tiny_classifier

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

X = np.array([[0.5], [-2.0]], dtype=np.float32)
COLOR = np.array([[b"red"], [b"green"]], dtype=np.object_)
ALIAS = "models/iris/aliases/production"


class FakeMonitor(monitor_pb2_grpc.MonitorServiceServicer, trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """Stands in for monitor (a later issue): records inference samples and exported spans."""

    def __init__(self) -> None:
        self.records: list[monitor_pb2.InferenceRecord] = []
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def RecordInferences(self, request: Any, context: Any) -> monitor_pb2.RecordInferencesResponse:
        with self.lock:
            self.records.extend(request.records)
        return monitor_pb2.RecordInferencesResponse(accepted_count=len(request.records))

    def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def monitor() -> Iterator[tuple[str, FakeMonitor]]:
    fake = FakeMonitor()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    monitor_pb2_grpc.add_MonitorServiceServicer_to_server(fake, server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", fake
    server.stop(None)


class Stack:
    """A registry, one or more serve replicas, and the model ``iris`` with versions 1-3."""

    def __init__(self, tmp_path: pathlib.Path, monitor_address: str, database_url: str = "") -> None:
        self.tmp_path = tmp_path
        self.common = {
            "FERRY_REGISTRY_ADDRESS": f"127.0.0.1:{free_port()}",
            "FERRY_MONITOR_ADDRESS": monitor_address,
            "FERRY_SERVE_POLL_MS": "100",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        if database_url:
            self.common["FERRY_SERVE_DATABASE_URL"] = database_url
        self.registry = spawn_and_wait(
            "registry",
            env={**self.common, "FERRY_STATE_DIR": str(tmp_path / "registry"), "OTEL_TRACES_EXPORTER": "none"},
            log_path=tmp_path / "registry.log",
            timeout=120,
        )
        self.serves: list[ServiceProcess] = []
        with RegistryClient(self.registry.address) as registry:
            registry.create_model("iris")
            for bias in (0.0, 5.0, -5.0):
                registry.upload_model_version("iris", tiny_classifier(bias=bias), format="onnx", signature=SIGNATURE)
            registry.set_alias(ALIAS, 1)

    def start_serve(self, name: str = "serve", address: str = "") -> ServiceProcess:
        env = {
            **self.common,
            "FERRY_SERVE_ADDRESS": address or f"127.0.0.1:{free_port()}",
            "FERRY_STATE_DIR": str(self.tmp_path / name),
        }
        process = spawn_and_wait("serve", env=env, log_path=self.tmp_path / f"{name}.log", timeout=120)
        self.serves.append(process)
        return process

    def registry_client(self) -> RegistryClient:
        return RegistryClient(self.registry.address)

    def stop(self) -> None:
        stop_all([*self.serves, self.registry])


def deployments(serve: ServiceProcess) -> serve_pb2_grpc.ServeServiceStub:
    return serve_pb2_grpc.ServeServiceStub(grpc.insecure_channel(serve.address))


def infer(client: grpcclient.InferenceServerClient, model: str = "iris", timeout: float = 30) -> grpcclient.InferResult:
    inputs = [grpcclient.InferInput("x", [2, 1], "FP32"), grpcclient.InferInput("color", [2, 1], "BYTES")]
    inputs[0].set_data_from_numpy(X)
    inputs[1].set_data_from_numpy(COLOR)
    return client.infer(model, inputs, client_timeout=timeout)


def answered_version(client: grpcclient.InferenceServerClient, model: str = "iris") -> str:
    return str(infer(client, model).get_response().model_version)


# Triton or serve still restarting counts as "not yet".
eventually = functools.partial(testing.eventually, timeout=60, retry_on=(InferenceServerException, grpc.RpcError))


@pytest.fixture
def stack(tmp_path: pathlib.Path, monitor: tuple[str, FakeMonitor]) -> Iterator[Stack]:
    made = Stack(tmp_path, monitor[0])
    try:
        yield made
    finally:
        made.stop()


def test_alias_moves_and_a_rollback_under_load_fail_no_request(stack: Stack) -> None:
    serve = stack.start_serve()
    created = deployments(serve).CreateDeployment(
        pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/iris")), timeout=120
    )
    assert created.state == pb.Deployment.STATE_READY, created.message
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(4)]
    failures: list[str] = []

    def client_loop(index: int) -> None:
        with grpcclient.InferenceServerClient(serve.address) as client:
            while not stop.is_set():
                try:
                    seen[index].append(answered_version(client))
                except InferenceServerException as error:
                    failures.append(f"{error.status()}: {error.message()}")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        with stack.registry_client() as registry, grpcclient.InferenceServerClient(serve.address) as probe:
            for move in ("2", "3", "rollback"):
                if move == "rollback":
                    registry.rollback_alias(ALIAS, reason="bad canary")
                    target = "2"
                else:
                    registry.set_alias(ALIAS, int(move))
                    target = move
                eventually(lambda t=target: answered_version(probe) == t, what=f"alias at {target}")
                time.sleep(0.5)  # keep the load on the new version for a while
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:5]
    order = ["1", "2", "3", "2"]
    for versions in seen:
        assert len(versions) > 20
        collapsed = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
        # Each client saw the alias's versions in the order it moved: none answered out of turn.
        position = 0
        for version in collapsed:
            while position < len(order) and order[position] != version:
                position += 1
            assert position < len(order), (collapsed, order)


def test_killed_triton_fails_fast_and_comes_back_by_itself_and_a_restarted_serve_restores(stack: Stack) -> None:
    address = f"127.0.0.1:{free_port()}"
    serve = stack.start_serve(address=address)
    deployments(serve).CreateDeployment(
        pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/iris")), timeout=120
    )
    triton = [p for p in psutil.Process(serve.pid).children(recursive=True) if p.name() == "tritonserver"]
    assert len(triton) == 1
    with grpcclient.InferenceServerClient(address) as client:
        assert answered_version(client) == "1"
        triton[0].kill()
        triton[0].wait(10)
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as raised:
            infer(client, timeout=10)
        assert time.monotonic() - started < 1.0, "a request hung while Triton was down"
        assert raised.value.status() == "StatusCode.UNAVAILABLE", raised.value.message()
        # Back without any call to the control plane.
        eventually(lambda: answered_version(client) == "1", what="deployment back after Triton restarted")

    serve.stop()
    stack.serves.remove(serve)
    restarted = stack.start_serve(address=address)
    deployment = deployments(restarted).GetDeployment(pb.GetDeploymentRequest(name="deployments/iris"), timeout=30)
    assert deployment.state == pb.Deployment.STATE_READY, deployment.message
    with grpcclient.InferenceServerClient(address) as client:
        assert answered_version(client) == "1"


def test_a_shadow_never_answers_the_caller_and_its_comparison_reaches_monitor(
    stack: Stack, monitor: tuple[str, FakeMonitor]
) -> None:
    fake = monitor[1]
    serve = stack.start_serve()
    created = deployments(serve).CreateDeployment(
        pb.CreateDeploymentRequest(
            deployment=pb.Deployment(
                model="models/iris", shadow=pb.TrafficSplit(target=pb.TrafficTarget(version=2), percent=100)
            )
        ),
        timeout=120,
    )
    assert created.state == pb.Deployment.STATE_READY, created.message
    assert {(v.version, v.route) for v in created.served_versions} == {(1, pb.ROUTE_PRIMARY), (2, pb.ROUTE_SHADOW)}
    with grpcclient.InferenceServerClient(serve.address) as client:
        versions = {answered_version(client) for _ in range(50)}
    assert versions == {"1"}, "the shadow answered a caller"

    def shadows() -> list[monitor_pb2.InferenceRecord]:
        with fake.lock:
            return [r for r in fake.records if r.route == "shadow"]

    recorded = eventually(lambda: len(shadows()) >= 50 and shadows(), what="shadow records")
    record = recorded[0]
    assert record.model_version == "models/iris/versions/2"
    assert record.shadow_comparison.primary_model_version == "models/iris/versions/1"
    assert record.shadow_comparison.max_abs_diff > 0.01  # version 2 answers differently
    assert 0.0 <= record.shadow_comparison.agreement <= 1.0 and not record.shadow_comparison.error
    primaries = [r for r in fake.records if r.route == "primary"]
    assert len(primaries) >= 50 and set(primaries[0].inputs.fields) == {"x", "color"}
    assert primaries[0].inputs.fields["color"].list_value.values[0].string_value == "red"

    def infer_spans() -> list[Any]:
        with fake.lock:
            return [s for s in fake.spans if s.name.endswith("ModelInfer")]

    spans = eventually(lambda: len(infer_spans()) >= 50 and infer_spans(), what="ModelInfer spans")
    attributes = {a.key: a.value for a in spans[0].attributes}
    assert attributes["ferry.deployment"].string_value == "iris"
    assert attributes["ferry.version"].int_value == 1
    assert attributes["ferry.route"].string_value == "primary"
    assert attributes["ferry.alias"].string_value == "production"


def test_two_replicas_on_one_postgresql_serve_the_same_deployments(
    tmp_path: pathlib.Path, monitor: tuple[str, FakeMonitor], postgres_url: str
) -> None:
    stack = Stack(tmp_path, monitor[0], database_url=postgres_url)
    try:
        first, second = stack.start_serve("serve-a"), stack.start_serve("serve-b")
        deployments(first).CreateDeployment(
            pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/iris")), timeout=120
        )
        with (
            grpcclient.InferenceServerClient(first.address) as a,
            grpcclient.InferenceServerClient(second.address) as b,
        ):
            eventually(lambda: answered_version(b) == "1", what="replica b serves what replica a created")
            # An alias move reaches both (each follows the registry itself).
            with stack.registry_client() as registry:
                registry.set_alias(ALIAS, 3)
            eventually(lambda: answered_version(a) == "3" and answered_version(b) == "3", what="both on version 3")
            # A change made through b reaches a.
            current = deployments(second).GetDeployment(pb.GetDeploymentRequest(name="deployments/iris"), timeout=30)
            deployments(second).UpdateDeployment(
                pb.UpdateDeploymentRequest(
                    deployment=pb.Deployment(
                        name="deployments/iris",
                        etag=current.etag,
                        primary=pb.TrafficTarget(version=2),
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=["primary"]),
                ),
                timeout=120,
            )
            eventually(lambda: answered_version(a) == "2", what="replica a follows b's update")
            deployments(first).DeleteDeployment(pb.DeleteDeploymentRequest(name="deployments/iris"), timeout=60)
            eventually(lambda: _not_found(b), what="replica b forgets the deleted deployment")
    finally:
        stack.stop()


def _not_found(client: grpcclient.InferenceServerClient) -> bool:
    try:
        infer(client)
    except InferenceServerException as error:
        return error.status() == "StatusCode.NOT_FOUND"
    return False
