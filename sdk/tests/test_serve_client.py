"""``ServeClient``, sync and asyncio, against real registry and serve processes (serve's embedded Triton).

One model with three versions: 1 and 2 are small classifiers that answer differently
(:func:`ferry_serve.testing.tiny_classifier`), 3 is not a model at all (its load fails);
alias ``production`` is on version 1. Predictions are compared with onnxruntime run on
the same rows.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from ferry.serve.v1 import serve_pb2 as pb
from ferry_common.settings import Settings, load_settings
from ferry_sdk import RegistryClient, ServeClient, ServiceProcess, aio, errors, spawn_and_wait
from ferry_sdk.spawn import closed_address
from ferry_serve.testing import CLASSES, tiny_classifier
from ferry_serve.testing import TINY_SIGNATURE as SIGNATURE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

SERVICE_ENV = {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json", "FERRY_SHUTDOWN_GRACE_SECONDS": "5"}
VERSIONS = {1: tiny_classifier(), 2: tiny_classifier(bias=5.0)}
BROKEN_VERSION = 3
# Version 2 answers all three classes on these rows (setosa, virginica, versicolor, ...).
ROWS = pd.DataFrame(
    {
        "x": [20.0, 0.0, -10.0, 0.5, np.nan],
        "color": ["red", None, "blue", "green", "purple"],
        "customer": ["a", "b", "c", "d", "e"],  # not an input: returned untouched
    },
    index=[10, 11, 12, 13, 14],
)


def settings() -> Settings:
    return load_settings("serve", {})  # ignore this machine's FERRY_* variables


def expected(version: int, rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    session = ort.InferenceSession(VERSIONS[version], providers=["CPUExecutionProvider"])
    x = rows["x"].to_numpy(dtype=np.float32).reshape(-1, 1)
    color = np.array([[value if isinstance(value, str) else ""] for value in rows["color"]], dtype=np.object_)
    probabilities, label = session.run(["probabilities", "label"], {"x": x, "color": color})
    return probabilities, [str(value) for value in label.ravel()]


@pytest.fixture(scope="module")
def model(registry_process: ServiceProcess) -> str:
    """A fresh model id on the session's registry, with versions 1, 2 (classifiers) and 3 (broken)."""
    model_id = f"iris-{uuid.uuid4().hex[:10]}"  # the registry is shared with other modules
    with RegistryClient(registry_process.address, settings=load_settings("registry", {})) as registry:
        registry.create_model(model_id)
        for version, artifact in {**VERSIONS, BROKEN_VERSION: b"not an onnx model"}.items():
            # Version 1 records its class names as train does (params["classes"]); 2 does not.
            params = {"classes": json.dumps(CLASSES)} if version == 1 else None
            made = registry.upload_model_version(model_id, artifact, format="onnx", signature=SIGNATURE, params=params)
            assert made.version == version
        registry.set_alias(f"models/{model_id}/aliases/production", 1)
    return model_id


@pytest.fixture(scope="module")
def serve_process(
    tmp_path_factory: pytest.TempPathFactory, registry_process: ServiceProcess
) -> Iterator[ServiceProcess]:
    state = tmp_path_factory.mktemp("serve")
    env = {
        **SERVICE_ENV,
        "FERRY_STATE_DIR": str(state),
        "FERRY_REGISTRY_ADDRESS": registry_process.address,
        "FERRY_MONITOR_ADDRESS": closed_address(),  # nobody: samples are dropped
        "FERRY_SERVE_POLL_MS": "100",
        "FERRY_SERVE_DRAIN_SECONDS": "1",
    }
    with spawn_and_wait("serve", env=env, log_path=state / "serve.log", timeout=120) as process:
        yield process


@pytest.fixture(scope="module")
def serve(serve_process: ServiceProcess) -> Iterator[ServeClient]:
    with ServeClient(serve_process.address, settings=settings()) as client:
        yield client


@pytest.fixture(scope="module")
def deployment(serve: ServeClient, model: str) -> str:
    """A READY deployment of the model: primary follows ``production``, version 2 is a canary at 0%."""
    created = serve.create_deployment("iris", model=model, canary=(2, 0))
    assert created.state == pb.Deployment.STATE_READY, created.message
    return "iris"


def routes(deployment: pb.Deployment) -> list[tuple[int, str]]:
    return sorted((v.version, pb.Route.Name(v.route)) for v in deployment.served_versions)


def test_deployments_are_created_read_listed_updated_and_deleted(serve: ServeClient, model: str) -> None:
    created = serve.create_deployment("lifecycle", model=model, batching={"max_batch_size": 8}, sample_rate=0.5)
    assert created.name == "deployments/lifecycle"
    assert created.model == f"models/{model}"
    assert created.state == pb.Deployment.STATE_READY, created.message
    assert created.primary.alias == "production"
    assert (created.batching.enabled, created.batching.max_batch_size) == (True, 8)
    assert created.sample_rate == 0.5
    assert routes(created) == [(1, "ROUTE_PRIMARY")]
    assert serve.get_deployment("lifecycle") == serve.get_deployment("deployments/lifecycle")
    assert "deployments/lifecycle" in [d.name for d in serve.list_deployments(page_size=1)]
    with pytest.raises(errors.AlreadyExists):
        serve.create_deployment("lifecycle", model=model)

    with_canary = serve.update_deployment("lifecycle", canary=(2, 30), etag=created.etag)
    assert with_canary.state == pb.Deployment.STATE_READY, with_canary.message
    assert (with_canary.canary.target.version, with_canary.canary.percent) == (2, 30)
    assert routes(with_canary) == [(1, "ROUTE_PRIMARY"), (2, "ROUTE_CANARY")]
    # Only the canary changed.
    assert (with_canary.batching.max_batch_size, with_canary.sample_rate) == (8, 0.5)
    assert with_canary.etag != created.etag

    with pytest.raises(errors.Aborted) as stale:
        serve.update_deployment("lifecycle", canary=None, etag=created.etag)
    assert stale.value.field == "deployment.etag"
    assert serve.get_deployment("lifecycle").HasField("canary"), "a refused update changed nothing"

    without_canary = serve.update_deployment("lifecycle", canary=None, sample_rate=0.0, etag=with_canary.etag)
    assert not without_canary.HasField("canary")
    assert without_canary.sample_rate == 0.0
    assert routes(serve.wait_ready("lifecycle", timeout=30)) == [(1, "ROUTE_PRIMARY")]

    serve.delete_deployment("lifecycle")
    with pytest.raises(errors.NotFound) as gone:
        serve.get_deployment("lifecycle")
    assert gone.value.field == "name"


def test_wait_ready_raises_with_the_failed_deployment(serve: ServeClient, model: str) -> None:
    created = serve.create_deployment("broken", model=model, primary_version=BROKEN_VERSION)
    assert created.state == pb.Deployment.STATE_FAILED
    with pytest.raises(errors.DeploymentFailed) as failed:
        serve.wait_ready("broken", timeout=30)
    assert failed.value.deployment.name == "deployments/broken"
    assert failed.value.deployment.message and failed.value.deployment.message in str(failed.value)
    with pytest.raises(errors.DeadlineExceeded):
        serve.wait_ready("broken", timeout=0)
    serve.delete_deployment("broken")


def test_predict_joins_the_outputs_to_the_rows(serve: ServeClient, deployment: str) -> None:
    answer = serve.predict(deployment, ROWS, request_id="req-7")
    assert answer.attrs == {"deployment": deployment, "model_version": 1, "request_id": "req-7"}
    assert list(answer.index) == list(ROWS.index)
    pd.testing.assert_frame_equal(answer[list(ROWS.columns)], ROWS)
    probabilities, labels = expected(1, ROWS)
    # Version 1 never answers virginica on these rows, but serve sends its recorded class names.
    columns = [f"probability_{c}" for c in CLASSES]
    np.testing.assert_allclose(answer[columns].to_numpy(), probabilities, rtol=0, atol=1e-6)
    assert list(answer["label"]) == labels and all(isinstance(label, str) for label in answer["label"])

    named = serve.predict(deployment, ROWS, classes=CLASSES)
    assert [c for c in named.columns if c.startswith("probability")] == [f"probability_{c}" for c in CLASSES]
    assert named.attrs["request_id"] and named.attrs["request_id"] != "req-7"

    # A mapping of columns works too, and a version is asked for by number (the idle canary's).
    columns_only = {"x": ROWS["x"].to_numpy(), "color": ROWS["color"].to_numpy()}
    second = serve.predict(f"deployments/{deployment}", columns_only, version=2)
    assert second.attrs["model_version"] == 2
    probabilities, labels = expected(2, ROWS)
    assert sorted(set(labels)) == sorted(CLASSES), "the rows must cover every class for this check"
    # No recorded classes, but every class is some row's answer: named after the labels.
    columns = [f"probability_{c}" for c in CLASSES]
    np.testing.assert_allclose(second[columns].to_numpy(), probabilities, rtol=0, atol=1e-6)
    assert list(second["label"]) == labels


def test_predict_errors_are_typed_and_name_the_tensor(serve: ServeClient, deployment: str) -> None:
    with pytest.raises(errors.InvalidArgument) as missing:
        serve.predict(deployment, ROWS.rename(columns={"color": "colour"}))
    assert missing.value.field == "inputs" and "'color'" in missing.value.message

    with pytest.raises(errors.InvalidArgument) as not_numbers:
        serve.predict(deployment, ROWS.assign(x=["1", "2", "three", "4", "5"]))
    assert not_numbers.value.field == "inputs[0]"
    assert "'x'" in not_numbers.value.message and "'three'" in not_numbers.value.message

    with pytest.raises(errors.NotFound):
        serve.predict("no-such-deployment", ROWS)
    with pytest.raises(errors.NotFound):
        serve.predict(deployment, ROWS, version=BROKEN_VERSION)  # not one of its versions


def test_aio_client_creates_and_predicts(serve_process: ServiceProcess, model: str) -> None:
    async def scenario() -> tuple[pb.Deployment, pd.DataFrame, list[str]]:
        async with aio.ServeClient(serve_process.address, settings=settings()) as client:
            created = await client.create_deployment("aio-iris", model=model, primary_version=2)
            ready = await client.wait_ready("aio-iris", timeout=30)
            assert ready.etag == created.etag
            answer = await client.predict("aio-iris", ROWS)
            names = [d.name async for d in client.list_deployments()]
            await client.delete_deployment("aio-iris")
            return created, answer, names

    created, answer, names = asyncio.run(scenario())
    assert created.state == pb.Deployment.STATE_READY, created.message
    assert routes(created) == [(2, "ROUTE_PRIMARY")]
    assert "deployments/aio-iris" in names
    assert answer.attrs["model_version"] == 2
    probabilities, labels = expected(2, ROWS)
    np.testing.assert_allclose(
        answer[[f"probability_{c}" for c in CLASSES]].to_numpy(), probabilities, rtol=0, atol=1e-6
    )
    assert list(answer["label"]) == labels
