"""Serve end to end: real registry and serve processes, the real tritonserver, tritonclient as users call it.

A model with two versions (they answer differently) is registered with a ``production``
alias; a deployment follows the alias. Requests go through serve with
``tritonclient.grpc.InferenceServerClient``, written the way Triton's own examples are.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import field_mask_pb2
from tritonclient.utils import InferenceServerException

from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_sdk import RegistryClient
from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all
from ferry_serve.testing import TINY_SIGNATURE as SIGNATURE
from ferry_serve.testing import tiny_classifier

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

X = np.array([[0.5], [-2.0], [3.0]], dtype=np.float32)
COLOR = np.array([[b"red"], [b"green"], [b"blue"]], dtype=np.object_)
VERSIONS = {1: tiny_classifier(), 2: tiny_classifier(bias=5.0)}


class Stack:
    def __init__(self, registry: ServiceProcess, serve: ServiceProcess) -> None:
        self.registry = registry
        self.serve = serve
        self.channel = grpc.insecure_channel(serve.address)
        self.deployments = serve_pb2_grpc.ServeServiceStub(self.channel)


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[Stack]:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "serve", "monitor")}
    common = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    common |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_SERVE_POLL_MS": "100", "FERRY_SERVE_MAX_REQUEST_BYTES": "65536"}
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("registry", "serve"):
            env = {**common, "FERRY_STATE_DIR": str(tmp_path / name)}
            started[name] = spawn_and_wait(name, env=env, log_path=tmp_path / f"{name}.log", timeout=120)
        with RegistryClient(started["registry"].address) as registry:
            registry.create_model("iris", description="two versions that answer differently")
            for version, artifact in VERSIONS.items():
                made = registry.upload_model_version("iris", artifact, format="onnx", signature=SIGNATURE)
                assert made.version == version
            registry.set_alias("models/iris/aliases/production", 1)
        stack = Stack(started["registry"], started["serve"])
        yield stack
        stack.channel.close()
    finally:
        stop_all(started.values())


def expected(version: int) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(VERSIONS[version], providers=["CPUExecutionProvider"])
    strings = np.array([[value.decode()] for value in COLOR[:, 0]], dtype=np.object_)
    probabilities, label = session.run(["probabilities", "label"], {"x": X, "color": strings})
    return probabilities, label


def infer(
    client: grpcclient.InferenceServerClient, model: str, version: str = "", request_id: str = ""
) -> grpcclient.InferResult:
    inputs = [grpcclient.InferInput("x", [3, 1], "FP32"), grpcclient.InferInput("color", [3, 1], "BYTES")]
    inputs[0].set_data_from_numpy(X)
    inputs[1].set_data_from_numpy(COLOR)
    outputs = [grpcclient.InferRequestedOutput("probabilities"), grpcclient.InferRequestedOutput("label")]
    return client.infer(model, inputs, model_version=version, outputs=outputs, request_id=request_id, client_timeout=30)


def wait_for_version(client: grpcclient.InferenceServerClient, version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if infer(client, "iris").get_response().model_version == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"deployment iris never answered with version {version}")


def test_a_deployment_follows_its_alias_and_answers_tritonclient(stack: Stack) -> None:
    created = stack.deployments.CreateDeployment(
        pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/iris")), timeout=120
    )
    assert created.name == "deployments/iris"
    assert created.state == pb.Deployment.STATE_READY, created.message
    assert [(v.version, v.route, v.ready) for v in created.served_versions] == [(1, pb.ROUTE_PRIMARY, True)]

    client = grpcclient.InferenceServerClient(url=stack.serve.address)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    result = infer(client, "iris", request_id="req-1")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "req-1")
    probabilities, labels = expected(1)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)
    assert [v.decode() for v in result.as_numpy("label").ravel()] == list(labels.ravel())
    assert infer(client, "iris").get_response().id, "a request id is generated when absent"

    metadata = client.get_model_metadata("iris")
    assert metadata.name == "iris" and list(metadata.versions) == ["1"]
    assert [i.name for i in metadata.inputs] == ["x", "color"]
    assert client.get_model_config("iris").config.name == "iris"
    statistics = client.get_inference_statistics("iris")
    assert [(s.name, s.version) for s in statistics.model_stats] == [("iris", "1")]
    assert statistics.model_stats[0].inference_stats.success.count >= 2

    # The alias moves: serve loads version 2, then switches.
    with RegistryClient(stack.registry.address) as registry:
        registry.set_alias("models/iris/aliases/production", 2)
    wait_for_version(client, "2")
    np.testing.assert_allclose(infer(client, "iris").as_numpy("probabilities"), expected(2)[0], rtol=1e-6)
    deployment = stack.deployments.GetDeployment(pb.GetDeploymentRequest(name="deployments/iris"), timeout=30)
    assert [(v.version, v.route) for v in deployment.served_versions] == [(2, pb.ROUTE_PRIMARY)]
    assert infer(client, "iris", version="production").get_response().model_version == "2"

    # A canary on version 1 gets its share of requests that name no version.
    updated = stack.deployments.UpdateDeployment(
        pb.UpdateDeploymentRequest(
            deployment=pb.Deployment(
                name="deployments/iris",
                etag=deployment.etag,
                canary=pb.TrafficSplit(target=pb.TrafficTarget(version=1), percent=30),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["canary"]),
        ),
        timeout=120,
    )
    assert updated.state == pb.Deployment.STATE_READY, updated.message
    answered = [infer(client, "iris").get_response().model_version for _ in range(2000)]
    canary_share = answered.count("1") / len(answered)
    # 2,000 draws at p = 0.3: the standard deviation is about 0.0102; 4.5 of them either side.
    assert 0.254 < canary_share < 0.346, canary_share
    assert infer(client, "iris", version="1").get_response().model_version == "1"

    # Turning dynamic batching on loads new Triton models beside the serving ones.
    current = stack.deployments.GetDeployment(pb.GetDeploymentRequest(name="deployments/iris"), timeout=30)
    batched = stack.deployments.UpdateDeployment(
        pb.UpdateDeploymentRequest(
            deployment=pb.Deployment(
                name="deployments/iris", etag=current.etag, batching=pb.Batching(enabled=True, max_batch_size=8)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["batching"]),
        ),
        timeout=120,
    )
    assert batched.state == pb.Deployment.STATE_READY, batched.message
    assert batched.batching.enabled and batched.batching.max_batch_size == 8
    assert client.get_model_config("iris").config.max_batch_size == 8
    np.testing.assert_allclose(infer(client, "iris", version="2").as_numpy("probabilities"), expected(2)[0], rtol=1e-6)
    client.close()


def test_bad_requests_get_clean_statuses_naming_the_field(stack: Stack) -> None:
    stack.deployments.CreateDeployment(
        pb.CreateDeploymentRequest(deployment_id="flowers", deployment=pb.Deployment(model="models/iris")), timeout=120
    )
    client = grpcclient.InferenceServerClient(url=stack.serve.address)

    def failure(call: object) -> InferenceServerException:
        with pytest.raises(InferenceServerException) as raised:
            call()  # type: ignore[operator]
        return raised.value

    unknown = failure(lambda: infer(client, "no-such-deployment"))
    assert unknown.status() == "StatusCode.NOT_FOUND" and "model_name" in unknown.message()
    not_served = failure(lambda: infer(client, "flowers", version="2"))
    assert not_served.status() == "StatusCode.NOT_FOUND" and "model_version" in not_served.message()
    no_alias = failure(lambda: infer(client, "flowers", version="staging"))
    assert no_alias.status() == "StatusCode.NOT_FOUND"

    wrong_type = [grpcclient.InferInput("x", [3, 1], "FP64"), grpcclient.InferInput("color", [3, 1], "BYTES")]
    wrong_type[0].set_data_from_numpy(X.astype(np.float64))
    wrong_type[1].set_data_from_numpy(COLOR)
    error = failure(lambda: client.infer("flowers", wrong_type))
    assert error.status() == "StatusCode.INVALID_ARGUMENT" and "inputs[0].datatype" in error.message()
    assert "'x'" in error.message()

    missing = [grpcclient.InferInput("x", [3, 1], "FP32")]
    missing[0].set_data_from_numpy(X)
    error = failure(lambda: client.infer("flowers", missing))
    assert error.status() == "StatusCode.INVALID_ARGUMENT" and "'color'" in error.message()

    big = [grpcclient.InferInput("x", [20000, 1], "FP32"), grpcclient.InferInput("color", [20000, 1], "BYTES")]
    big[0].set_data_from_numpy(np.zeros((20000, 1), dtype=np.float32))
    big[1].set_data_from_numpy(np.full((20000, 1), b"red", dtype=np.object_))
    error = failure(lambda: client.infer("flowers", big))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED" and "FERRY_SERVE_MAX_REQUEST_BYTES" in error.message()

    # Triton's repository RPCs are not passed through.
    error = failure(lambda: client.get_model_repository_index())
    assert error.status() == "StatusCode.UNIMPLEMENTED"

    # Control plane: unknown model, unknown version, an alias that is not set.
    def create_error(deployment: pb.Deployment, deployment_id: str = "") -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as raised:
            stack.deployments.CreateDeployment(
                pb.CreateDeploymentRequest(deployment_id=deployment_id, deployment=deployment), timeout=60
            )
        return raised.value

    error = create_error(pb.Deployment(model="models/nothing"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "deployment.model" in (error.details() or "")
    error = create_error(pb.Deployment(model="models/iris", primary=pb.TrafficTarget(version=9)), "nine")
    assert error.code() == grpc.StatusCode.NOT_FOUND and "deployment.primary.version" in (error.details() or "")
    error = create_error(pb.Deployment(model="models/iris", primary=pb.TrafficTarget(alias="staging")), "stage")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    error = create_error(pb.Deployment(model="models/iris"), "flowers")
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    names = [d.name for d in stack.deployments.ListDeployments(pb.ListDeploymentsRequest(), timeout=30).deployments]
    assert names == ["deployments/flowers"], "a refused create left a deployment behind"
    client.close()


def test_a_version_that_fails_to_load_leaves_traffic_where_it_was(stack: Stack) -> None:
    stack.deployments.CreateDeployment(
        pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/iris")), timeout=120
    )
    with RegistryClient(stack.registry.address) as registry:
        broken = registry.upload_model_version("iris", b"not an onnx model", format="onnx", signature=SIGNATURE)
        registry.set_alias("models/iris/aliases/production", broken.version)
    deadline = time.monotonic() + 60
    deployment = stack.deployments.GetDeployment(pb.GetDeploymentRequest(name="deployments/iris"), timeout=30)
    while deployment.state != pb.Deployment.STATE_FAILED and time.monotonic() < deadline:
        time.sleep(0.2)
        deployment = stack.deployments.GetDeployment(pb.GetDeploymentRequest(name="deployments/iris"), timeout=30)
    assert deployment.state == pb.Deployment.STATE_FAILED, deployment.message
    assert f"iris.{broken.version}" in deployment.message and "traffic stays on serving version 1" in deployment.message
    assert [(v.version, v.route) for v in deployment.served_versions] == [(1, pb.ROUTE_PRIMARY)]
    with grpcclient.InferenceServerClient(url=stack.serve.address) as client:
        assert infer(client, "iris").get_response().model_version == "1"
