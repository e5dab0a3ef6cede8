"""kill -9 mid-job: of the worker, then of the train service; each job resumes and succeeds.

Real ingest, registry and train processes. The penguins data is replicated so that an
epoch takes a few seconds: the kill lands after the first epoch's checkpoint and well
before the last epoch. After the crash the job must continue from its last checkpoint by
itself (a new attempt) without training a finished epoch again, and be registered.
"""

from __future__ import annotations

import os
import pathlib
import signal
import time
from collections.abc import Iterator

import grpc
import pandas as pd
import psutil
import pytest

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_sdk import IngestClient
from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all

pytestmark = pytest.mark.slow
palmerpenguins = pytest.importorskip("palmerpenguins")

EPOCHS = 6
REPLICAS = 12  # about 4,000 rows: an epoch of batch 16 takes a few seconds on a busy CPU


class Stack:
    """Registry, ingest and train processes on one temporary directory; train can be killed and restarted."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "ingest", "train")}
        self.common = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
        self.common |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json"}
        self.processes: dict[str, ServiceProcess] = {}

    def start(self, name: str) -> ServiceProcess:
        env = {**self.common, "FERRY_STATE_DIR": str(self.root / name), "FERRY_TRAIN_POLL_MS": "100"}
        self.processes[name] = spawn_and_wait(name, env=env, log_path=self.root / f"{name}.log", timeout=120)
        return self.processes[name]


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[Stack]:
    started = Stack(tmp_path)
    try:
        for name in ("registry", "ingest", "train"):
            started.start(name)
        yield started
    finally:
        stop_all(started.processes.values())
        # A worker outlives a service killed with -9 (its own session): end any left over.
        for process in psutil.process_iter(["cmdline", "environ"]):
            try:
                cmdline = process.info["cmdline"] or []
                if "ferry_train.worker" in cmdline and str(tmp_path) in (process.environ() or {}).get(
                    "FERRY_STATE_DIR", ""
                ):
                    process.kill()
            except psutil.Error:
                pass


def _submit(stack: Stack, job_id: str) -> tuple[train_pb2_grpc.TrainServiceStub, str]:
    frame = pd.concat([palmerpenguins.load_penguins()] * REPLICAS, ignore_index=True)
    with IngestClient(stack.processes["ingest"].address) as ingest:
        raw = ingest.upload_dataset(f"penguins-{job_id}", frame)
        recipe = {
            "steps": [
                {
                    "split": {
                        "fractions": [{"name": "train", "fraction": 0.8}, {"name": "validation", "fraction": 0.2}],
                        "seed": 7,
                    }
                }
            ]
        }
        split = ingest.transform_dataset(raw.name, f"penguins-{job_id}-split", recipe)
    train = _stub(stack)
    job = pb.TrainingJob(
        dataset_version=split.name,
        training_split="train",
        validation_split="validation",
        target="species",
        task=pb.TASK_CLASSIFICATION,
        model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[16], dropout=0.0)),
        hyperparameters=pb.Hyperparameters(max_epochs=EPOCHS, batch_size=16, learning_rate=0.01, seed=3),
        resources=pb.Resources(accelerator="cpu", devices=1),
        register_model=f"models/{job_id}",
    )
    created = train.CreateTrainingJob(
        pb.CreateTrainingJobRequest(training_job_id=job_id, training_job=job, request_id=job_id), timeout=30
    )
    return train, created.name


def _stub(stack: Stack) -> train_pb2_grpc.TrainServiceStub:
    return train_pb2_grpc.TrainServiceStub(grpc.insecure_channel(stack.processes["train"].address))


def _wait_for_first_epoch(train: train_pb2_grpc.TrainServiceStub, name: str, timeout: float = 180) -> pb.TrainingJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = train.GetTrainingJob(pb.GetTrainingJobRequest(name=name), timeout=10)
        assert job.state in (pb.TrainingJob.STATE_QUEUED, pb.TrainingJob.STATE_RUNNING), job.error
        if job.current_epoch >= 1:
            assert job.current_epoch < EPOCHS, "the job trained every epoch before the kill: use more data"
            return job
        time.sleep(0.05)
    raise AssertionError(f"{name}: no epoch finished within {timeout:g}s")


def _worker(train_service: ServiceProcess) -> psutil.Process:
    workers = [
        child
        for child in psutil.Process(train_service.pid).children()
        if "ferry_train.worker" in (child.cmdline() or [])
    ]
    assert len(workers) == 1, workers
    return workers[0]


def _finish(train: train_pb2_grpc.TrainServiceStub, name: str) -> tuple[pb.TrainingJob, list[pb.TrainingJobEvent]]:
    events = list(train.WatchTrainingJob(pb.WatchTrainingJobRequest(name=name), timeout=300))
    return train.GetTrainingJob(pb.GetTrainingJobRequest(name=name), timeout=30), events


def _assert_resumed(job: pb.TrainingJob, events: list[pb.TrainingJobEvent], killed_after: int) -> None:
    assert job.state == pb.TrainingJob.STATE_SUCCEEDED, job.error
    assert job.attempt == 2
    assert job.model_version
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # gap-free
    # Epoch numbers per attempt: an attempt begins with a RUNNING state change.
    attempts: list[list[int]] = []
    for event in events:
        if event.HasField("state_change") and event.state_change.state == pb.TrainingJob.STATE_RUNNING:
            attempts.append([])
        elif event.HasField("epoch"):
            attempts[-1].append(event.epoch.epoch)
    assert len(attempts) == 2, attempts
    first, second = attempts
    assert len(first) >= killed_after
    # No epoch is trained twice, none is skipped: the second attempt starts after the checkpoint.
    assert first + second == list(range(EPOCHS)), attempts
    assert second and second[0] == len(first)


def test_a_worker_killed_with_sigkill_is_restarted_from_its_last_checkpoint(stack: Stack) -> None:
    train, name = _submit(stack, "crash-worker")
    seen = _wait_for_first_epoch(train, name)
    _worker(stack.processes["train"]).kill()

    job, events = _finish(train, name)
    _assert_resumed(job, events, seen.current_epoch)


def test_a_train_service_killed_with_sigkill_resumes_its_job_after_restart(stack: Stack) -> None:
    train, name = _submit(stack, "crash-service")
    seen = _wait_for_first_epoch(train, name)
    orphan = _worker(stack.processes["train"])
    # Frozen, so that it cannot finish the job while the service restarts (a race on a fast
    # machine); the restarted service must still find it and kill it (asserted below).
    os.killpg(orphan.pid, signal.SIGSTOP)
    stack.processes["train"].kill()

    stack.start("train")
    train = _stub(stack)
    job, events = _finish(train, name)
    _assert_resumed(job, events, seen.current_epoch)
    # The worker of the dead service does not train on next to the new one.
    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
