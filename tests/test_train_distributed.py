"""Distributed training through the real services: DDP on two CPU devices, and two "nodes".

``devices: 2`` with ``strategy: ddp`` on CPU runs DDP over gloo inside the scheduler's worker
(Lightning starts the second process itself); the same worker command runs unchanged under
``torchrun --nnodes=2 --nproc-per-node=1``, here as two "nodes" on loopback against the train
service's database. Either way the job succeeds once: one registered version, one event per
epoch (not one per rank), one outcome.

Every DDP run happens in subprocesses: Lightning DDP inside the pytest process would re-run
pytest on rank 1.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_sdk import IngestClient, RegistryClient
from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all

pytestmark = pytest.mark.slow
palmerpenguins = pytest.importorskip("palmerpenguins")

EPOCHS = 2


def _stack(tmp_path: pathlib.Path, **train_env: str) -> tuple[dict[str, ServiceProcess], dict[str, str]]:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "ingest", "train")}
    common = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    common |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json"}
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("registry", "ingest", "train"):
            env = {**common, "FERRY_STATE_DIR": str(tmp_path / name), "FERRY_TRAIN_POLL_MS": "100"}
            if name == "train":
                env |= train_env
            started[name] = spawn_and_wait(name, env=env, log_path=tmp_path / f"{name}.log", timeout=120)
    except BaseException:
        stop_all(started.values())
        raise
    return started, common


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[dict[str, ServiceProcess]]:
    started, _ = _stack(tmp_path)
    try:
        yield started
    finally:
        stop_all(started.values())


@pytest.fixture
def idle_stack(tmp_path: pathlib.Path) -> Iterator[tuple[dict[str, ServiceProcess], dict[str, str]]]:
    """The services, with a train service that runs no worker itself (the jobs run elsewhere)."""
    started, common = _stack(tmp_path, FERRY_TRAIN_MAX_CONCURRENT_JOBS="0")
    try:
        yield started, common
    finally:
        stop_all(started.values())


def _create_job(stack: dict[str, ServiceProcess], job_id: str, resources: pb.Resources) -> str:
    with IngestClient(stack["ingest"].address) as ingest:
        raw = ingest.upload_dataset("penguins", palmerpenguins.load_penguins())
        recipe = {
            "steps": [
                {
                    "split": {
                        "fractions": [{"name": "train", "fraction": 0.8}, {"name": "validation", "fraction": 0.2}],
                        "seed": 7,
                        "stratify_column": "species",
                    }
                }
            ]
        }
        split = ingest.transform_dataset(raw.name, "penguins-split", recipe)
    job = pb.TrainingJob(
        dataset_version=split.name,
        training_split="train",
        validation_split="validation",
        target="species",
        task=pb.TASK_CLASSIFICATION,
        model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[8], dropout=0.0)),
        hyperparameters=pb.Hyperparameters(max_epochs=EPOCHS, batch_size=32, learning_rate=0.01, seed=3),
        resources=resources,
        register_model="models/penguins",
        code_revision="distributed-test",
    )
    with grpc.insecure_channel(stack["train"].address) as channel:
        created = train_pb2_grpc.TrainServiceStub(channel).CreateTrainingJob(
            pb.CreateTrainingJobRequest(training_job_id=job_id, training_job=job, request_id=f"create-{job_id}"),
            timeout=30,
        )
    assert created.state == pb.TrainingJob.STATE_QUEUED
    return str(created.name)


def _assert_ran_ddp(log: str) -> None:
    """Lightning's own lines: two processes in one gloo process group."""
    assert "distributed_backend=gloo" in log, log[-4000:]
    assert "Starting with 2 processes" in log, log[-4000:]


def _assert_succeeded_once(stack: dict[str, ServiceProcess], name: str, **params: str) -> None:
    """SUCCEEDED once, one event per epoch, one registered version with these params."""
    with grpc.insecure_channel(stack["train"].address) as channel:
        train = train_pb2_grpc.TrainServiceStub(channel)
        events = list(train.WatchTrainingJob(pb.WatchTrainingJobRequest(name=name), timeout=120))
        finished = train.GetTrainingJob(pb.GetTrainingJobRequest(name=name), timeout=30)
    assert finished.state == pb.TrainingJob.STATE_SUCCEEDED, finished.error
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # gap-free
    states = [e.state_change.state for e in events if e.HasField("state_change")]
    assert states[-2:] == [pb.TrainingJob.STATE_RUNNING, pb.TrainingJob.STATE_SUCCEEDED], states
    assert states.count(pb.TrainingJob.STATE_RUNNING) == 1  # one attempt
    assert [e.epoch.epoch for e in events if e.HasField("epoch")] == list(range(EPOCHS))
    assert finished.model_version and "val_accuracy" in finished.metrics
    with RegistryClient(stack["registry"].address) as registry:
        versions = list(registry.list_model_versions("models/penguins"))
        assert [v.name for v in versions] == [finished.model_version]
        version = versions[0]
    assert version.lineage.training_job == name
    assert {key: version.params[key] for key in params} == params


def test_two_cpu_devices_run_ddp_over_gloo_and_report_once(
    stack: dict[str, ServiceProcess], tmp_path: pathlib.Path
) -> None:
    name = _create_job(stack, "penguins-ddp", pb.Resources(accelerator="cpu", devices=2, strategy="ddp"))
    _assert_succeeded_once(stack, name, devices="2", num_nodes="1", strategy="ddp", accelerator="cpu")
    # The scheduler's worker log holds the output of both ranks (Lightning starts rank 1).
    (log,) = (tmp_path / "train").glob("**/penguins-ddp/attempt-1.log")
    _assert_ran_ddp(log.read_text(errors="replace"))


def test_the_worker_command_runs_on_two_nodes_under_torchrun(
    idle_stack: tuple[dict[str, ServiceProcess], dict[str, str]], tmp_path: pathlib.Path
) -> None:
    stack, common = idle_stack
    name = _create_job(stack, "penguins-2n", pb.Resources(accelerator="cpu", devices=1, num_nodes=2, strategy="ddp"))
    # The worker command the scheduler and a PyTorchJob pod run, under torchrun; each "node"
    # sees the train service's state directory (its database and object store).
    env = {
        **os.environ,
        **common,
        "FERRY_STATE_DIR": str(tmp_path / "train"),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
    port = free_port()
    nodes: list[tuple[subprocess.Popen[bytes], pathlib.Path]] = []
    try:
        for node_rank in (0, 1):
            log = tmp_path / f"node-{node_rank}.log"
            command = [
                str(pathlib.Path(sys.executable).with_name("torchrun")),
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={node_rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "ferry_train.worker",
                "--job",
                name,
            ]
            with log.open("wb") as out:
                process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            nodes.append((process, log))
        for process, log in nodes:
            try:
                returncode = process.wait(timeout=180)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{log.name} still running:\n{log.read_text()[-4000:]}")
            assert returncode == 0, f"{log.name} exited {returncode}:\n{log.read_text()[-4000:]}"
    finally:
        for process, _ in nodes:
            if process.poll() is None:
                process.kill()
                process.wait()
    _assert_succeeded_once(stack, name, devices="1", num_nodes="2", strategy="ddp")
    _assert_ran_ddp(nodes[0][1].read_text(errors="replace"))
    assert "Traceback" not in nodes[1][1].read_text(errors="replace")
