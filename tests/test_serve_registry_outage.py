"""Serve without its registry: a restart while the registry is down, and outages while it runs.

Real registry and serve processes (embedded tritonserver), driven through their public
contracts only. A deployment that could not be applied because the registry was unreachable
is retried by serve itself: once the registry is back it answers, without any call to serve's
control plane; the alias watch resumes after each outage.
"""

from __future__ import annotations

import functools
import pathlib
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_common import testing
from ferry_sdk import RegistryClient
from ferry_sdk.spawn import ServiceProcess, closed_address, free_port, spawn_and_wait, stop_all
from ferry_serve.testing import TINY_SIGNATURE, tiny_classifier

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

ALIAS = "models/iris/aliases/production"


class Services:
    """A registry and a serve on fixed addresses, each restartable on its own state."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.tmp_path = tmp_path
        self.registry_address = f"127.0.0.1:{free_port()}"
        self.serve_address = f"127.0.0.1:{free_port()}"
        self.registry: ServiceProcess | None = None
        self.serve: ServiceProcess | None = None
        self.common = {
            "FERRY_REGISTRY_ADDRESS": self.registry_address,
            # Nothing listens there: samples are dropped and counted, never block a request.
            "FERRY_MONITOR_ADDRESS": closed_address(),
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_SERVE_POLL_MS": "200",
            "FERRY_SERVE_DRAIN_SECONDS": "1",
        }

    def _spawn(self, name: str, address: str, timeout: float) -> ServiceProcess:
        env = {**self.common, "FERRY_STATE_DIR": str(self.tmp_path / name)}
        return spawn_and_wait(name, env=env, address=address, log_path=self.tmp_path / f"{name}.log", timeout=timeout)

    def start_registry(self) -> None:
        self.registry = self._spawn("registry", self.registry_address, timeout=120)

    def stop_registry(self) -> None:
        assert self.registry is not None
        self.registry.stop()
        self.registry = None

    def start_serve(self) -> None:
        self.serve = self._spawn("serve", self.serve_address, timeout=180)

    def stop_serve(self) -> None:
        assert self.serve is not None
        self.serve.stop()
        self.serve = None

    def deployment(self) -> pb.Deployment:
        stub = serve_pb2_grpc.ServeServiceStub(grpc.insecure_channel(self.serve_address))
        return stub.GetDeployment(pb.GetDeploymentRequest(name="deployments/iris"), timeout=30)

    def stop(self) -> None:
        stop_all([p for p in (self.serve, self.registry) if p is not None])


@pytest.fixture
def services(tmp_path: pathlib.Path) -> Iterator[Services]:
    made = Services(tmp_path)
    try:
        yield made
    finally:
        made.stop()


def answered_version(client: grpcclient.InferenceServerClient) -> str:
    inputs = [grpcclient.InferInput("x", [1, 1], "FP32"), grpcclient.InferInput("color", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[0.5]], dtype=np.float32))
    inputs[1].set_data_from_numpy(np.array([[b"red"]], dtype=np.object_))
    return str(client.infer("iris", inputs, client_timeout=30).get_response().model_version)


# Triton or serve still restarting counts as "not yet".
eventually = functools.partial(testing.eventually, timeout=90, retry_on=(InferenceServerException, grpc.RpcError))


def test_a_deployment_restored_while_the_registry_is_down_serves_once_it_is_back(services: Services) -> None:
    services.start_registry()
    with RegistryClient(services.registry_address) as registry:
        registry.create_model("iris")
        for bias in (0.0, 5.0, -5.0):
            registry.upload_model_version("iris", tiny_classifier(bias=bias), format="onnx", signature=TINY_SIGNATURE)
        registry.set_alias(ALIAS, 1)
    services.start_serve()
    stub = serve_pb2_grpc.ServeServiceStub(grpc.insecure_channel(services.serve_address))
    created = stub.CreateDeployment(
        pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/iris")), timeout=120
    )
    assert created.state == pb.Deployment.STATE_READY, created.message

    # Serve restarts while the registry is down (a stack coming back in the wrong order).
    services.stop_serve()
    services.stop_registry()
    services.start_serve()
    waiting = services.deployment()
    assert waiting.state == pb.Deployment.STATE_PENDING, waiting
    assert "registry is unavailable" in waiting.message and "retrying in" in waiting.message, waiting.message
    with grpcclient.InferenceServerClient(services.serve_address) as client:
        with pytest.raises(InferenceServerException) as raised:
            answered_version(client)
        assert raised.value.status() == "StatusCode.UNAVAILABLE", raised.value.message()
        assert "retrying in" in str(raised.value.message())

        # The registry comes back: serve's retry applies the deployment, no call to serve needed.
        services.start_registry()
        back = time.monotonic()
        eventually(lambda: answered_version(client) == "1", what="deployment served after the registry came back")
        recovered = time.monotonic() - back
        ready = services.deployment()
        assert ready.state == pb.Deployment.STATE_READY, ready.message
        assert [(v.version, v.route) for v in ready.served_versions] == [(1, pb.ROUTE_PRIMARY)]
        # The backoff is capped at 10 s (FERRY_SERVE_RETRY_MAX_MS), plus the channel's reconnect.
        assert recovered < 45, f"serving again took {recovered:.1f} s after the registry was back"

        # The alias watch, opened while the registry was down, follows moves now.
        with RegistryClient(services.registry_address) as registry:
            registry.set_alias(ALIAS, 2)
        eventually(lambda: answered_version(client) == "2", what="alias move to 2 followed")

        # An outage while serve runs: traffic stays, and the watch resumes after it.
        services.stop_registry()
        assert answered_version(client) == "2"
        services.start_registry()
        with RegistryClient(services.registry_address) as registry:
            registry.set_alias(ALIAS, 3)
        eventually(lambda: answered_version(client) == "3", what="alias move to 3 followed after an outage")
    final = services.deployment()
    assert final.state == pb.Deployment.STATE_READY, final.message
    print(f"serving again {recovered:.1f} s after the registry was back")
