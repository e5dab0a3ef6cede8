"""Serve's Triton layer against the real ``tritonserver`` from the nvidia-pytriton wheel.

No mocks: a small ONNX classifier shaped like train's exports (one FP32 and one BYTES column
of shape [-1, 1] in; ``probabilities`` and ``label`` out) is written to a real model
repository, loaded into a real Triton, and called with tritonclient's sync gRPC client.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from ferry.registry.v1 import registry_pb2
from ferry_common.errors import FailedPrecondition, InvalidArgument
from ferry_serve.testing import tiny_classifier
from ferry_serve.triton import (
    Batching,
    EmbeddedTriton,
    ExternalTriton,
    Signature,
    TensorSpec,
    TritonControl,
    TritonStartError,
    locate_triton,
    remove_model,
    render_config,
    triton_model_name,
    write_model,
)

pytestmark = pytest.mark.xdist_group("triton")  # one Triton per module, on one worker

T = TypeVar("T")
SIGNATURE = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 1)), TensorSpec("color", "BYTES", (-1, 1))),
    outputs=(TensorSpec("probabilities", "FP32", (-1, 3)), TensorSpec("label", "BYTES", (-1, 1))),
)
ROWS_X = np.array([[0.5], [-2.0], [3.0], [0.0]], dtype=np.float32)
ROWS_COLOR = np.array([[b"red"], [b"green"], [b"blue"], [b"unseen"]], dtype=np.object_)


def onnxruntime_outputs(onnx_bytes: bytes, x: np.ndarray, color: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    strings = np.array([[value.decode()] for value in color[:, 0]], dtype=np.object_)
    probabilities, label = session.run(["probabilities", "label"], {"x": x, "color": strings})
    return probabilities, np.array([[value.encode()] for value in label[:, 0]], dtype=np.object_)


def infer(url: str, model: str, x: np.ndarray, color: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One request through tritonclient's sync gRPC client, the way Triton's examples do it."""
    with triton_grpc.InferenceServerClient(url) as client:
        inputs = [
            triton_grpc.InferInput("x", list(x.shape), "FP32"),
            triton_grpc.InferInput("color", list(color.shape), "BYTES"),
        ]
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(color)
        outputs = [triton_grpc.InferRequestedOutput("probabilities"), triton_grpc.InferRequestedOutput("label")]
        result = client.infer(model, inputs, outputs=outputs, client_timeout=30)
        return result.as_numpy("probabilities"), result.as_numpy("label")


def assert_same(got: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6, atol=1e-7)
    assert got[1].tolist() == expected[1].tolist()


def process_group(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``: tritonserver and its stubs."""
    members = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class LoopThread:
    """An asyncio loop in a thread: the supervisor keeps running while a test blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Gateway:
    """What the gateway will do: remember loaded models and reload them after a restart."""

    def __init__(self, triton: EmbeddedTriton, control: TritonControl) -> None:
        self.triton = triton
        self.control = control
        self.loaded: set[str] = set()
        self.restarts_seen = 0

    async def load(self, name: str) -> None:
        await self.control.load(name)
        self.loaded.add(name)

    async def unload(self, name: str) -> None:
        await self.control.unload(name)
        self.loaded.discard(name)

    async def on_restart(self) -> None:
        for name in sorted(self.loaded):
            await self.control.load(name)
        self.restarts_seen += 1


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def gateway(loop: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("serve-state")
    triton = EmbeddedTriton(state, state / "repository", log_path=state / "logs" / "triton.log")
    loop.run(triton.start())
    control = TritonControl(triton.grpc_url)
    gateway = Gateway(triton, control)
    triton.on_restart = gateway.on_restart
    yield gateway
    loop.run(control.close())
    loop.run(triton.stop())


@pytest.fixture(scope="module")
def iris_v1(loop: LoopThread, gateway: Gateway) -> bytes:
    model = tiny_classifier()
    write_model(gateway.triton.repository, "iris.1", model, SIGNATURE, backend="python")
    loop.run(gateway.load("iris.1"))
    return model


# --- config generation and repository layout (no Triton) -------------------------------------


def parse(config: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(config, model_config_pb2.ModelConfig())


def test_config_without_batching_keeps_full_shapes() -> None:
    config = parse(render_config("iris.1", SIGNATURE, backend="python"))
    assert (config.name, config.backend, config.max_batch_size) == ("iris.1", "python", 0)
    assert [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
        ("x", "TYPE_FP32", [-1, 1]),
        ("color", "TYPE_STRING", [-1, 1]),
    ]
    assert [(t.name, list(t.dims)) for t in config.output] == [("probabilities", [-1, 3]), ("label", [-1, 1])]
    assert not config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.parameters["onnx_intra_op_threads"].string_value == "1"


def test_config_with_batching_drops_the_batch_dimension() -> None:
    batching = Batching(max_batch_size=16, max_queue_delay_microseconds=250, preferred_batch_sizes=(4, 8))
    config = parse(render_config("iris.2", SIGNATURE, backend="onnxruntime", batching=batching))
    assert (config.platform, config.backend, config.max_batch_size) == ("onnxruntime_onnx", "", 16)
    assert config.default_model_filename == "model.onnx"
    assert [list(t.dims) for t in config.input] == [[1], [1]]
    assert [list(t.dims) for t in config.output] == [[3], [1]]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    one_dim = Signature(inputs=(TensorSpec("v", "INT64", (-1,)),), outputs=(TensorSpec("y", "FP64", (-1,)),))
    config = parse(render_config("v.1", one_dim, backend="python", batching=Batching(4)))
    assert list(config.input[0].dims) == [1] and config.input[0].HasField("reshape")


@pytest.mark.parametrize(
    ("signature", "batching", "field"),
    [
        (Signature((TensorSpec("x", "FLOAT", (-1, 1)),), SIGNATURE.outputs), None, "signature.inputs[0].datatype"),
        (Signature((TensorSpec("x", "FP32", (2, 1)),), SIGNATURE.outputs), Batching(8), "batching"),
        (Signature((), SIGNATURE.outputs), None, "signature.inputs"),
        (SIGNATURE, Batching(0), "batching.max_batch_size"),
        (Signature((TensorSpec("label", "FP32", (-1, 1)),), SIGNATURE.outputs), None, "signature"),
    ],
)
def test_bad_signatures_and_batching_are_refused(signature: Signature, batching: Batching | None, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        render_config("iris.1", signature, backend="python", batching=batching)
    assert raised.value.field == field


def test_signature_from_registry_proto() -> None:
    proto = registry_pb2.ModelSignature(
        inputs=[registry_pb2.TensorSpec(name="x", datatype="FP32", shape=[-1, 1])],
        outputs=[registry_pb2.TensorSpec(name="prediction", datatype="FP32", shape=[-1, 1])],
    )
    assert Signature.from_registry(proto) == Signature(
        inputs=(TensorSpec("x", "FP32", (-1, 1)),), outputs=(TensorSpec("prediction", "FP32", (-1, 1)),)
    )
    proto.inputs[0].datatype = "TYPE_FP32"
    with pytest.raises(InvalidArgument, match="unknown datatype 'TYPE_FP32'"):
        Signature.from_registry(proto)


def test_write_replace_and_remove_model(tmp_path: pathlib.Path) -> None:
    repository = tmp_path / "repository"
    name = triton_model_name("iris", 7)
    assert name == "iris.7"
    target = write_model(repository, name, b"first", SIGNATURE, backend="python")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        "1",
        "1/model.onnx",
        "1/model.py",
        "config.pbtxt",
    ]
    assert "class TritonPythonModel" in (target / "1" / "model.py").read_text()
    write_model(repository, name, b"second", SIGNATURE, backend="onnxruntime")
    assert (target / "1" / "model.onnx").read_bytes() == b"second"
    assert not (target / "1" / "model.py").exists()
    assert [p.name for p in repository.iterdir()] == [name]  # no staging or trash left
    with pytest.raises(InvalidArgument):
        write_model(repository, "../escape", b"x", SIGNATURE, backend="python")
    remove_model(repository, name)
    remove_model(repository, name)  # absent is fine
    assert list(repository.iterdir()) == []


def test_missing_wheel_is_a_failed_precondition(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FailedPrecondition, match=r"nvidia-pytriton wheel under .* is incomplete"):
        locate_triton(tmp_path)


# --- the real Triton ---------------------------------------------------------------------------


def test_load_warm_and_infer_match_onnxruntime(loop: LoopThread, gateway: Gateway, iris_v1: bytes) -> None:
    control = gateway.control
    assert loop.run(control.ready("iris.1"))
    loop.run(control.warm("iris.1", SIGNATURE))
    assert_same(
        infer(gateway.triton.grpc_url, "iris.1", ROWS_X, ROWS_COLOR), onnxruntime_outputs(iris_v1, ROWS_X, ROWS_COLOR)
    )
    labels = infer(gateway.triton.grpc_url, "iris.1", ROWS_X, ROWS_COLOR)[1]
    assert len({label for (label,) in labels.tolist()}) > 1  # the rows really differ
    index = {state.name: state for state in loop.run(control.index())}
    assert index["iris.1"].state == "READY"
    assert not [name for name in index if name.startswith(".")]
    assert not loop.run(control.ready("never-written.1"))


def test_two_versions_side_by_side_then_unload_one(loop: LoopThread, gateway: Gateway, iris_v1: bytes) -> None:
    url = gateway.triton.grpc_url
    v2 = tiny_classifier(bias=2.0)
    write_model(gateway.triton.repository, "iris.2", v2, SIGNATURE, backend="python")
    loop.run(gateway.load("iris.2"))
    loop.run(gateway.control.warm("iris.2", SIGNATURE))
    first, second = infer(url, "iris.1", ROWS_X, ROWS_COLOR), infer(url, "iris.2", ROWS_X, ROWS_COLOR)
    assert_same(first, onnxruntime_outputs(iris_v1, ROWS_X, ROWS_COLOR))
    assert_same(second, onnxruntime_outputs(v2, ROWS_X, ROWS_COLOR))
    assert first[1].tolist() != second[1].tolist()

    # iris.2 keeps answering while iris.1 is unloaded beside it.
    stop = threading.Event()
    answered: list[bool] = []

    def keep_calling() -> None:
        while not stop.is_set():
            answered.append(infer(url, "iris.2", ROWS_X, ROWS_COLOR)[1].tolist() == second[1].tolist())

    with ThreadPoolExecutor(1) as pool:
        calls = pool.submit(keep_calling)
        time.sleep(0.1)
        loop.run(gateway.unload("iris.1"))
        time.sleep(0.1)
        stop.set()
        calls.result()
    assert answered and all(answered)
    assert not loop.run(gateway.control.ready("iris.1"))
    assert loop.run(gateway.control.ready("iris.2"))
    with pytest.raises(InferenceServerException):
        infer(url, "iris.1", ROWS_X, ROWS_COLOR)
    loop.run(gateway.load("iris.1"))  # back, for the tests after this one


def test_dynamic_batching_merges_concurrent_requests(loop: LoopThread, gateway: Gateway) -> None:
    model = tiny_classifier(bias=-1.0)
    batching = Batching(max_batch_size=8, max_queue_delay_microseconds=20_000)
    write_model(gateway.triton.repository, "iris.3", model, SIGNATURE, backend="python", batching=batching)
    loop.run(gateway.load("iris.3"))
    loop.run(gateway.control.warm("iris.3", SIGNATURE))
    rows = [(ROWS_X[i : i + 1], ROWS_COLOR[i : i + 1]) for i in range(len(ROWS_X))] * 2
    with ThreadPoolExecutor(len(rows)) as pool:
        results = list(pool.map(lambda row: infer(gateway.triton.grpc_url, "iris.3", *row), rows))
    for (x, color), result in zip(rows, results, strict=True):
        assert_same(result, onnxruntime_outputs(model, x, color))
    with triton_grpc.InferenceServerClient(gateway.triton.grpc_url) as client:
        (stats,) = client.get_inference_statistics("iris.3").model_stats
    # warm-up (1) + 8 requests; fewer executions than requests: model.py ran merged batches.
    assert stats.inference_count == 1 + len(rows)
    assert stats.execution_count < stats.inference_count
    loop.run(gateway.unload("iris.3"))


def test_broken_model_fails_to_load_with_triton_reason(loop: LoopThread, gateway: Gateway) -> None:
    write_model(gateway.triton.repository, "broken.1", b"this is not onnx", SIGNATURE, backend="python")
    with pytest.raises(FailedPrecondition) as raised:
        loop.run(gateway.control.load("broken.1"))
    message = raised.value.message
    assert 'Triton model "broken.1": load failed' in message
    assert "protobuf" in message.lower() or "onnx" in message.lower() or "model.onnx" in message, message
    assert "At:" not in message  # model.py's traceback is trimmed
    assert not loop.run(gateway.control.ready("broken.1"))
    with triton_grpc.InferenceServerClient(gateway.triton.grpc_url) as client:
        assert client.is_server_ready()  # one bad model does not make the whole server unready
    remove_model(gateway.triton.repository, "broken.1")


@pytest.mark.slow
def test_killed_triton_is_restarted_and_models_reloaded(loop: LoopThread, gateway: Gateway, iris_v1: bytes) -> None:
    triton = gateway.triton
    url = triton.grpc_url
    external_restarts: list[float] = []

    async def external_saw_restart() -> None:
        external_restarts.append(time.monotonic())

    external = ExternalTriton(url, on_restart=external_saw_restart, poll_interval=0.05)
    loop.run(external.start())
    old_pid = triton.pid
    assert old_pid is not None
    stubs = [pid for pid in process_group(old_pid) if pid != old_pid]
    assert stubs, "each loaded python model runs in a stub process"
    seen, restarts = gateway.restarts_seen, triton.restarts

    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: gateway.restarts_seen > seen, 60, "on_restart after the kill")
    assert triton.restarts == restarts + 1
    assert triton.pid not in (None, old_pid) and triton.grpc_url == url
    assert process_group(old_pid) == [], "the killed server's stubs were left running"
    assert_same(infer(url, "iris.1", ROWS_X, ROWS_COLOR), onnxruntime_outputs(iris_v1, ROWS_X, ROWS_COLOR))
    wait_until(lambda: bool(external_restarts), 10, "ExternalTriton's on_restart")
    assert external.restarts == 1
    loop.run(external.stop())


@pytest.mark.slow
def test_stop_leaves_no_process_or_shared_memory(loop: LoopThread, tmp_path: pathlib.Path) -> None:
    triton = EmbeddedTriton(tmp_path, tmp_path / "repository", log_path=tmp_path / "triton.log", stop_grace=10)
    loop.run(triton.start())
    control = TritonControl(triton.grpc_url)
    try:
        write_model(triton.repository, "iris.1", tiny_classifier(), SIGNATURE, backend="python")
        loop.run(control.load("iris.1"))
        pid = triton.pid
        assert pid is not None
        group = process_group(pid)
        assert len(group) >= 2  # tritonserver and the stub
        shm = list(pathlib.Path("/dev/shm").glob(f"{triton._shm_prefix}*"))
        assert shm, "the stub's shared-memory region"
    finally:
        loop.run(control.close())
        loop.run(triton.stop())
    assert process_group(pid) == []
    assert not any(pathlib.Path(f"/proc/{member}").exists() for member in group)
    assert not list(pathlib.Path("/dev/shm").glob(f"{triton._shm_prefix}*"))
    assert triton.pid is None
    loop.run(triton.stop())  # twice is fine


def test_failed_start_reports_the_log_and_leaves_nothing(loop: LoopThread, tmp_path: pathlib.Path) -> None:
    triton = EmbeddedTriton(
        tmp_path, tmp_path / "repository", log_path=tmp_path / "triton.log", extra_args=["--no-such-flag"]
    )
    with pytest.raises(TritonStartError, match=r"(?s)exited with code \d+ before it was ready.*no-such-flag"):
        loop.run(triton.start())
    assert triton.pid is None
    loop.run(triton.stop())


OWNER = """
import asyncio, pathlib, sys, time
from ferry_serve.testing import tiny_classifier
from ferry_serve.triton import EmbeddedTriton, Signature, TensorSpec, TritonControl, write_model

root = pathlib.Path(sys.argv[1])
signature = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 1)), TensorSpec("color", "BYTES", (-1, 1))),
    outputs=(TensorSpec("probabilities", "FP32", (-1, 3)), TensorSpec("label", "BYTES", (-1, 1))),
)

async def main() -> None:
    triton = EmbeddedTriton(root, root / "repository", log_path=root / "triton.log")
    await triton.start()
    write_model(triton.repository, "iris.1", tiny_classifier(), signature, backend="python")
    await TritonControl(triton.grpc_url).load("iris.1")
    print("TRITON_PID", triton.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.slow
def test_triton_and_its_stubs_die_with_a_killed_owner(tmp_path: pathlib.Path) -> None:
    # kill -9 of serve (or an OOM kill) used to leave tritonserver running with its ports.
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        lines = iter(owner.stdout.readline, "")  # its log lines, then the marker
        marker = next((line for line in lines if line.startswith("TRITON_PID ")), "")
        assert marker, f"the owner ended without starting Triton (see {tmp_path / 'triton.log'})"
        pid = int(marker.split()[1])
        group = process_group(pid)
        assert len(group) >= 2  # tritonserver and the model's stub
    finally:
        owner.kill()
        owner.wait()
    wait_until(lambda: process_group(pid) == [], 30, "tritonserver and its stubs gone after the owner's kill -9")
