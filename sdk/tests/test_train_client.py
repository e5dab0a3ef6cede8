"""``TrainClient``, sync and asyncio, against real registry, ingest and train processes.

A small palmerpenguins job (2 epochs) trains to SUCCEEDED on a train service that runs
jobs; queued-job behaviour (cancel, resume, filters) and form errors use a second train
service that runs none (``FERRY_TRAIN_MAX_CONCURRENT_JOBS=0``), so its jobs stay queued.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from ferry.train.v1 import train_pb2 as pb
from ferry_sdk import Backoff, IngestClient, ServiceProcess, errors, free_port, spawn_and_wait

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train")]
palmerpenguins = pytest.importorskip("palmerpenguins")

State = pb.TrainingJob
SERVICE_ENV = {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json", "FERRY_SHUTDOWN_GRACE_SECONDS": "5"}
SMALL_JOB: dict[str, Any] = {
    "target": "species",
    "hidden_units": (16,),
    "dropout": 0.0,
    "max_epochs": 2,
    "batch_size": 32,
    "learning_rate": 0.01,
    "seed": 3,
}


def _train_process(
    tmp_path_factory: pytest.TempPathFactory, registry: ServiceProcess, ingest: ServiceProcess, max_jobs: int
) -> Iterator[ServiceProcess]:
    state = tmp_path_factory.mktemp(f"train-{max_jobs}")
    env = {
        **SERVICE_ENV,
        "FERRY_STATE_DIR": str(state),
        "FERRY_REGISTRY_ADDRESS": registry.address,
        "FERRY_INGEST_ADDRESS": ingest.address,
        "FERRY_TRAIN_POLL_MS": "100",
        "FERRY_TRAIN_MAX_CONCURRENT_JOBS": str(max_jobs),
    }
    with spawn_and_wait("train", env=env, log_path=state / "train.log", timeout=120) as process:
        yield process


@pytest.fixture(scope="module")
def train_process(
    tmp_path_factory: pytest.TempPathFactory, registry_process: ServiceProcess, ingest_process: ServiceProcess
) -> Iterator[ServiceProcess]:
    yield from _train_process(tmp_path_factory, registry_process, ingest_process, max_jobs=2)


@pytest.fixture(scope="module")
def idle_train_process(
    tmp_path_factory: pytest.TempPathFactory, registry_process: ServiceProcess, ingest_process: ServiceProcess
) -> Iterator[ServiceProcess]:
    yield from _train_process(tmp_path_factory, registry_process, ingest_process, max_jobs=0)


@pytest.fixture(scope="module")
def penguins(ingest_process: ServiceProcess) -> str:
    """A split penguins dataset version (train / validation), uploaded once per module."""
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
    with IngestClient(ingest_process.address) as ingest:
        raw = ingest.upload_dataset("penguins-sdk", palmerpenguins.load_penguins())
        return str(ingest.transform_dataset(raw.name, "penguins-sdk-split", recipe).name)


@pytest.fixture
def train(make_client: Callable[..., Any], train_process: ServiceProcess) -> Any:
    return make_client("train", train_process.address)


@pytest.fixture
def idle_train(make_client: Callable[..., Any], idle_train_process: ServiceProcess) -> Any:
    return make_client("train", idle_train_process.address)


def test_a_job_trains_to_succeeded_with_an_event_per_epoch(
    train: Any, registry: Any, penguins: str, new_id: Callable[[str], str]
) -> None:
    job_id, model = new_id("penguins"), new_id("penguins-model")
    created = train.create_training_job(
        job_id, dataset_version=penguins, register_model=model, code_revision="sdk-test", **SMALL_JOB
    )
    assert created.name == f"trainingJobs/{job_id}" and created.state == State.STATE_QUEUED
    assert list(created.model.mlp.hidden_units) == [16] and created.hyperparameters.max_epochs == 2

    watch = train.watch_training_job(job_id)
    events = list(watch)  # ends by itself once the job is final

    assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # gap-free, from the start
    states = [e.state_change.state for e in events if e.HasField("state_change")]
    epochs = [e.epoch for e in events if e.HasField("epoch")]
    assert State.STATE_RUNNING in states and states[-1] == State.STATE_SUCCEEDED
    assert [e.epoch for e in epochs] == [0, 1]
    assert all({"train_loss", "val_loss", "val_accuracy"} <= set(e.metrics) for e in epochs)

    finished = train.wait_for(created.name, timeout=60)
    assert finished.state == State.STATE_SUCCEEDED and finished.current_epoch == 2
    assert finished.last_sequence == events[-1].sequence
    version = registry.get_model_version(finished.model_version)
    assert version.lineage.training_job == created.name and version.lineage.code_revision == "sdk-test"

    # Resuming from a saved sequence delivers only what came after it; past the end, nothing.
    assert [e.sequence for e in train.watch_training_job(created.name, since_sequence=2)] == [
        e.sequence for e in events[2:]
    ]
    assert list(train.watch_training_job(created.name, since_sequence=finished.last_sequence)) == []

    succeeded = [j.name for j in train.list_training_jobs(filter=f"state=STATE_SUCCEEDED AND register_model={model}")]
    assert succeeded == [created.name]
    assert created.name not in [j.name for j in train.list_training_jobs(filter="state=STATE_QUEUED")]


def test_wait_for_a_failed_job_raises_an_error_naming_it(train: Any, ingest: Any, new_id: Callable[[str], str]) -> None:
    # Passes the create checks (the column exists) but the worker refuses a feature with no value.
    frame = pd.DataFrame({"x": [float(i) for i in range(40)], "blank": [float("nan")] * 40, "label": ["a", "b"] * 20})
    raw = ingest.upload_dataset(new_id("blank"), frame)
    split = {"split": {"fractions": [{"name": "train", "fraction": 0.5}, {"name": "validation", "fraction": 0.5}]}}
    version = ingest.transform_dataset(raw.name, new_id("blank-split"), {"steps": [split]})
    job = train.create_training_job(
        new_id("blank"),
        dataset_version=version.name,
        register_model=new_id("never"),
        **{**SMALL_JOB, "target": "label", "features": ["x", "blank"]},
    )

    with pytest.raises(errors.TrainingJobFailed) as raised:
        train.wait_for(job.name, timeout=110)

    assert raised.value.job.name == job.name and raised.value.job.state == State.STATE_FAILED
    assert job.name in str(raised.value) and "blank" in raised.value.job.error


def test_a_queued_job_lists_cancels_and_resumes(idle_train: Any, penguins: str, new_id: Callable[[str], str]) -> None:
    message = pb.TrainingJob(
        dataset_version=penguins,
        target="species",
        task=pb.TASK_CLASSIFICATION,
        model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[8])),
        register_model="models/never-trained",
    )
    job = idle_train.create_training_job(new_id("queued"), message, request_id=new_id("request"))
    assert idle_train.get_training_job(job.name.removeprefix("trainingJobs/")) == job

    queued = [j.name for j in idle_train.list_training_jobs(filter="state=STATE_QUEUED", page_size=1)]
    assert job.name in queued

    cancelled = idle_train.cancel_training_job(job.name)
    assert cancelled.state == State.STATE_CANCELLED
    assert idle_train.wait_for(job.name, timeout=30).state == State.STATE_CANCELLED  # final, not an error
    assert job.name not in [j.name for j in idle_train.list_training_jobs(filter="state=STATE_QUEUED")]
    assert job.name in [j.name for j in idle_train.list_training_jobs(filter="state=STATE_CANCELLED")]

    assert idle_train.resume_training_job(job.name).state == State.STATE_QUEUED
    with pytest.raises(errors.FailedPrecondition) as raised:
        idle_train.resume_training_job(job.name)
    assert "QUEUED" in raised.value.message

    # Rendering goes through; this service's local object store cannot back pods on several nodes.
    with pytest.raises(errors.FailedPrecondition, match="s3://"):
        idle_train.render_training_job_manifest(job.name, image="ferry-train:test", namespace="ml")


def test_refusals_are_typed_errors_naming_the_field(
    idle_train: Any, penguins: str, new_id: Callable[[str], str]
) -> None:
    with pytest.raises(errors.InvalidArgument) as raised:
        idle_train.create_training_job(
            new_id("bad"), dataset_version=penguins, register_model="m", **{**SMALL_JOB, "hidden_units": (0,)}
        )
    assert raised.value.field == "training_job.model.mlp.hidden_units"

    with pytest.raises(errors.InvalidArgument) as raised:
        idle_train.create_training_job("Not An Id!", dataset_version=penguins, register_model="m", target="species")
    assert raised.value.field == "training_job_id"

    with pytest.raises(errors.NotFound) as missing:
        idle_train.get_training_job("no-such-job")
    assert "trainingJobs/no-such-job" in missing.value.message

    with pytest.raises(errors.InvalidArgument) as bad_filter:
        list(idle_train.list_training_jobs(filter="colour=blue"))
    assert bad_filter.value.field == "filter"

    with pytest.raises(ValueError, match="task"):
        idle_train.create_training_job(dataset_version=penguins, target="species", task="clustering")


def test_a_watch_resumes_across_a_train_service_restart(
    make_client: Callable[..., Any],
    registry_process: ServiceProcess,
    ingest_process: ServiceProcess,
    penguins: str,
    tmp_path: pathlib.Path,
) -> None:
    env = {
        **SERVICE_ENV,
        "FERRY_STATE_DIR": str(tmp_path),
        "FERRY_REGISTRY_ADDRESS": registry_process.address,
        "FERRY_INGEST_ADDRESS": ingest_process.address,
        "FERRY_TRAIN_POLL_MS": "100",
        "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0",
    }
    address = f"127.0.0.1:{free_port()}"
    process = spawn_and_wait("train", env=env, address=address, log_path=tmp_path / "train-1.log")
    try:
        train = make_client("train", address)
        job = train.create_training_job("restarted", dataset_version=penguins, register_model="m", **SMALL_JOB)
        watch = train.watch_training_job(job.name, backoff=Backoff(initial=0.05, maximum=0.5, give_up_after=60))
        seen: list[pb.TrainingJobEvent] = []
        follower = threading.Thread(target=lambda: seen.extend(watch), daemon=True)
        follower.start()
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.sequence for e in seen] == [1]  # QUEUED

        assert process.stop(timeout=15) == 0  # the drain ends the watch stream; the job stays queued
        process = spawn_and_wait("train", env=env, address=address, log_path=tmp_path / "train-2.log")
        _cancel_once_reachable(train, job.name)
        follower.join(timeout=60)

        assert not follower.is_alive()  # the watch ended by itself once the job was final
        assert [e.sequence for e in seen] == [1, 2]  # nothing missed, nothing repeated
        assert seen[-1].state_change.state == State.STATE_CANCELLED
    finally:
        process.stop()


def _cancel_once_reachable(train: Any, name: str) -> None:
    """Cancel is not retried by the client; the channel may still be in its reconnect backoff."""
    deadline = time.monotonic() + 30
    while True:
        try:
            train.cancel_training_job(name)
            return
        except errors.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
