"""TrainService over a real in-process gRPC server: jobs, validation, cancel, resume, watch, manifests.

Jobs stay queued (``FERRY_TRAIN_MAX_CONCURRENT_JOBS=0``): nothing trains here. Events a
worker would write are appended through a second store on the same database. Create checks
a job's data through ingest: a real ingest process holds ``datasets/penguins/versions/1``.
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
import types
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import yaml
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_common.process import closed_address
from ferry_common.testing import ServiceThread, test_settings
from ferry_sdk import IngestClient
from ferry_sdk.spawn import spawn_and_wait
from ferry_train import worker
from ferry_train.__main__ import build
from ferry_train.config import TrainConfig
from ferry_train.messages import spec_from_proto
from ferry_train.scheduler import Scheduler
from ferry_train.spec import JobSpec
from ferry_train.store import SqlTrainStore, open_database
from ferry_train.store.base import CANCELLED, CANCELLING, FAILED, QUEUED, RUNNING

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Train:
    def __init__(self, service: ServiceThread, store: SqlTrainStore) -> None:
        self.service = service
        self.channel = service.channel()
        self.stub = train_pb2_grpc.TrainServiceStub(self.channel)
        self.store = store

    def create(self, job_id: str = "churn-1", request_id: str = "", **changes: Any) -> pb.TrainingJob:
        return self.stub.CreateTrainingJob(
            pb.CreateTrainingJobRequest(training_job=job(**changes), training_job_id=job_id, request_id=request_id),
            timeout=30,
        )


def job(**changes: Any) -> pb.TrainingJob:
    message = pb.TrainingJob(
        dataset_version="datasets/penguins/versions/1",
        training_split="train",
        validation_split="validation",
        target="species",
        task=pb.TASK_CLASSIFICATION,
        model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[16, 8], dropout=0.1)),
        hyperparameters=pb.Hyperparameters(max_epochs=3, batch_size=32, learning_rate=0.01, seed=7),
        resources=pb.Resources(accelerator="cpu", devices=1),
        register_model="models/penguins",
    )
    for path, value in changes.items():
        target: Any = message
        *parents, leaf = path.split("__")
        for parent in parents:
            target = getattr(target, parent)
        if isinstance(value, list):
            del getattr(target, leaf)[:]
            getattr(target, leaf).extend(value)
        elif isinstance(value, pb.ModelSpec):
            target.model.CopyFrom(value)
        else:
            setattr(target, leaf, value)
    return message


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'train.db'}"


@pytest.fixture(scope="module")
def ingest_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ingest serving ``datasets/penguins/versions/1`` with train and validation splits."""
    palmerpenguins = pytest.importorskip("palmerpenguins")
    state = tmp_path_factory.mktemp("ingest")
    env = {"FERRY_STATE_DIR": str(state), "OTEL_TRACES_EXPORTER": "none"}
    process = spawn_and_wait("ingest", env=env, log_path=state / "ingest.log", timeout=120)
    try:
        split = {"fractions": [{"name": "train", "fraction": 0.8}, {"name": "validation", "fraction": 0.2}]}
        with IngestClient(process.address) as ingest:
            raw = ingest.upload_dataset("penguins-raw", palmerpenguins.load_penguins())
            ingest.transform_dataset(raw.name, "penguins", {"steps": [{"split": {**split, "seed": 7}}]})
        yield process.address
    finally:
        process.stop()


@pytest.fixture
def train(database_url: str, ingest_address: str, tmp_path: pathlib.Path) -> Iterator[Train]:
    env = {
        "FERRY_INGEST_ADDRESS": ingest_address,
        "FERRY_TRAIN_DATABASE_URL": database_url,
        "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0",
        "FERRY_TRAIN_POLL_MS": "50",
    }
    database = open_database(TrainConfig(database_url=database_url))
    with ServiceThread(test_settings("train", tmp_path, env), build) as service:
        harness = Train(service, SqlTrainStore(database))
        yield harness
        harness.channel.close()
    database.close()


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def violated_field(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    request = error_details_pb2.BadRequest()
    status.details[0].Unpack(request)
    return str(request.field_violations[0].field)


def test_create_get_and_list_with_filter_and_pages(train: Train) -> None:
    created = train.create("churn-1", request_id="req-1")
    assert created.name == "trainingJobs/churn-1"
    assert created.state == pb.TrainingJob.STATE_QUEUED
    assert created.attempt == 0 and created.last_sequence == 1
    assert list(created.model.mlp.hidden_units) == [16, 8]
    assert created.hyperparameters.seed == 7 and created.create_time.seconds > 0

    again = train.create("churn-other", request_id="req-1")
    assert again.name == "trainingJobs/churn-1", "same request_id returns the same job"
    duplicate = failure(lambda: train.create("churn-1"))
    assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "churn-1" in duplicate.details()

    got = train.stub.GetTrainingJob(pb.GetTrainingJobRequest(name="trainingJobs/churn-1"))
    assert got == created
    missing = failure(lambda: train.stub.GetTrainingJob(pb.GetTrainingJobRequest(name="trainingJobs/nope")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    for index in range(2, 6):
        train.create(f"churn-{index}", register_model="models/other" if index == 5 else "models/penguins")
    train.store.claim("churn-2")

    names: list[str] = []
    token = ""
    while True:
        page = train.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=2, page_token=token))
        names += [j.name.split("/")[1] for j in page.training_jobs]
        token = page.next_page_token
        if not token:
            break
    assert names == ["churn-5", "churn-4", "churn-3", "churn-2", "churn-1"], "newest first"

    running = train.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(filter="state=STATE_RUNNING"))
    assert [j.name for j in running.training_jobs] == ["trainingJobs/churn-2"]
    queued = train.stub.ListTrainingJobs(
        pb.ListTrainingJobsRequest(filter="state=STATE_QUEUED AND register_model=penguins", page_size=1)
    )
    assert [j.name for j in queued.training_jobs] == ["trainingJobs/churn-4"]
    replay = failure(
        lambda: train.stub.ListTrainingJobs(
            pb.ListTrainingJobsRequest(filter="state=STATE_RUNNING", page_size=1, page_token=queued.next_page_token)
        )
    )
    assert replay.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_field(replay) == "page_token"
    bad = failure(lambda: train.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(filter="state=SLEEPING")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_field(bad) == "filter"


BAD_INPUTS = [
    ({"job_id": "Bad_Id"}, "training_job_id"),
    ({"dataset_version": "datasets/penguins"}, "training_job.dataset_version"),
    ({"dataset_version": "datasets/penguins/versions/0"}, "training_job.dataset_version"),
    ({"training_split": "a\nb"}, "training_job.training_split"),
    ({"target": ""}, "training_job.target"),
    ({"task": pb.TASK_UNSPECIFIED}, "training_job.task"),
    ({"model": pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[]))}, "training_job.model.mlp.hidden_units"),
    ({"model": pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[8, 0]))}, "training_job.model.mlp.hidden_units"),
    ({"model__mlp__dropout": 1.0}, "training_job.model.mlp.dropout"),
    ({"model__mlp__dropout": -0.1}, "training_job.model.mlp.dropout"),
    ({"model__mlp__dropout": float("nan")}, "training_job.model.mlp.dropout"),
    (
        {"model": pb.ModelSpec(custom=pb.CustomModel(entry_point="pkg.mod Net"))},
        "training_job.model.custom.entry_point",
    ),
    ({"hyperparameters__max_epochs": -1}, "training_job.hyperparameters.max_epochs"),
    ({"hyperparameters__batch_size": -5}, "training_job.hyperparameters.batch_size"),
    ({"hyperparameters__learning_rate": -0.1}, "training_job.hyperparameters.learning_rate"),
    ({"hyperparameters__seed": -1}, "training_job.hyperparameters.seed"),
    ({"register_model": "churn"}, "training_job.register_model"),
    ({"register_model": "models/Churn"}, "training_job.register_model"),
    ({"resources__accelerator": "tpu"}, "training_job.resources.accelerator"),
    ({"resources__devices": -2}, "training_job.resources.devices"),
    ({"resources__precision": "8-bit"}, "training_job.resources.precision"),
    ({"request_id": "spaces are not ids"}, "request_id"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_INPUTS)
def test_bad_input_is_invalid_argument_naming_the_field(
    tmp_path: pathlib.Path, changes: dict[str, Any], field: str
) -> None:
    url = f"sqlite:///{tmp_path / 'train.db'}"
    env = {"FERRY_TRAIN_DATABASE_URL": url, "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0"}
    with ServiceThread(test_settings("train", tmp_path, env), build) as service:
        stub = train_pb2_grpc.TrainServiceStub(service.channel())
        changes = dict(changes)
        job_id = changes.pop("job_id", "churn-1")
        request_id = changes.pop("request_id", "")
        request = pb.CreateTrainingJobRequest(
            training_job=job(**changes), training_job_id=job_id, request_id=request_id
        )
        error = failure(lambda: stub.CreateTrainingJob(request, timeout=30))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert violated_field(error) == field
        assert field.rsplit(".", 1)[-1] in error.details()
        assert not stub.ListTrainingJobs(pb.ListTrainingJobsRequest()).training_jobs, "no job was created"


def test_more_devices_than_the_machine_has_is_failed_precondition(train: Train) -> None:
    cpus = os.cpu_count() or 1
    error = failure(lambda: train.create(resources__devices=cpus + 1))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert violated_field(error) == "training_job.resources.devices"
    assert str(cpus) in error.details()
    import torch

    if not torch.cuda.is_available():
        error = failure(lambda: train.create(resources__accelerator="gpu"))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert violated_field(error) == "training_job.resources.accelerator"
    assert not train.stub.ListTrainingJobs(pb.ListTrainingJobsRequest()).training_jobs


def test_cancel_queued_at_once_and_running_through_cancelling(train: Train) -> None:
    train.create("queued")
    cancelled = train.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(name="trainingJobs/queued"))
    assert cancelled.state == pb.TrainingJob.STATE_CANCELLED and cancelled.HasField("end_time")

    train.create("running")
    train.store.claim("running")
    cancelling = train.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(name="trainingJobs/running"))
    assert cancelling.state == pb.TrainingJob.STATE_CANCELLING

    train.create("done")
    train.store.claim("done")
    train.store.set_state("done", "SUCCEEDED", model_version="models/penguins/versions/1")
    error = failure(lambda: train.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(name="trainingJobs/done")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "STATE_SUCCEEDED" in error.details()


def test_resume_rules(train: Train) -> None:
    train.create("job")
    error = failure(lambda: train.stub.ResumeTrainingJob(pb.ResumeTrainingJobRequest(name="trainingJobs/job")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "STATE_QUEUED" in error.details()

    train.store.claim("job")
    train.store.record_epoch("job", 0, {"val_loss": 0.5}, "file:///ckpt/job/epoch-0.ckpt")
    train.store.set_state("job", FAILED, error="NaN loss")
    resumed = train.stub.ResumeTrainingJob(pb.ResumeTrainingJobRequest(name="trainingJobs/job"))
    assert resumed.state == pb.TrainingJob.STATE_QUEUED
    assert resumed.error == "" and resumed.checkpoint_uri == "file:///ckpt/job/epoch-0.ckpt"
    assert resumed.current_epoch == 1 and resumed.attempt == 1
    claimed = train.store.claim("job")
    assert claimed is not None and claimed.attempt == 2 and claimed.state == RUNNING

    train.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(name="trainingJobs/job"))
    train.store.set_state("job", "CANCELLED")
    again = train.stub.ResumeTrainingJob(pb.ResumeTrainingJobRequest(name="trainingJobs/job"))
    assert again.state == pb.TrainingJob.STATE_QUEUED
    missing = failure(lambda: train.stub.ResumeTrainingJob(pb.ResumeTrainingJobRequest(name="trainingJobs/none")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


def test_watch_replays_then_follows_until_the_job_ends(train: Train) -> None:
    train.create("job")
    train.store.claim("job")  # 2
    train.store.append_event("job", "log", {"level": "info", "message": "loading"})  # 3
    train.store.record_epoch("job", 0, {"train_loss": 1.5, "val_loss": 1.2}, "file:///c/0")  # 4

    replay = train.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(name="trainingJobs/job", since_sequence=0))
    seen: list[pb.TrainingJobEvent] = []
    done = threading.Event()

    def follow() -> None:
        for event in replay:
            seen.append(event)
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    train.store.record_epoch("job", 1, {"train_loss": 0.9, "val_loss": 0.8}, "file:///c/1")  # 5
    train.store.set_state("job", "SUCCEEDED", model_version="models/penguins/versions/1")  # 6
    assert done.wait(15), "the stream ends once the job is terminal and every event was sent"
    assert [e.sequence for e in seen] == [1, 2, 3, 4, 5, 6]
    assert seen[0].state_change.state == pb.TrainingJob.STATE_QUEUED
    assert seen[1].state_change.state == pb.TrainingJob.STATE_RUNNING
    assert seen[2].log.message == "loading"
    assert seen[3].epoch.epoch == 0 and seen[3].epoch.metrics["val_loss"] == pytest.approx(1.2)
    assert seen[5].state_change.state == pb.TrainingJob.STATE_SUCCEEDED

    after = list(train.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(name="trainingJobs/job", since_sequence=4)))
    assert [e.sequence for e in after] == [5, 6], "since_sequence is exclusive"
    got = train.stub.GetTrainingJob(pb.GetTrainingJobRequest(name="trainingJobs/job"))
    assert got.last_sequence == 6 and got.current_epoch == 2 and got.checkpoint_uri == "file:///c/1"
    assert got.metrics["val_loss"] == pytest.approx(0.8) and got.model_version == "models/penguins/versions/1"

    missing = failure(lambda: list(train.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(name="trainingJobs/x"))))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


def test_render_manifest(train: Train) -> None:
    request = pb.RenderTrainingJobManifestRequest(
        training_job=pb.TrainingJob(name="trainingJobs/churn-1", resources=pb.Resources(devices=2, num_nodes=2)),
        image="ghcr.io/example/ferry-train:1",
        namespace="ml",
    )
    # The default object store is a local directory, which pods on several nodes cannot share.
    error = failure(lambda: train.stub.RenderTrainingJobManifest(request))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "s3://" in error.details()


def test_render_manifest_with_s3(tmp_path: pathlib.Path) -> None:
    env = {
        "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0",
        "FERRY_OBJECT_STORE_URL": "s3://ferry/data",
        "FERRY_S3_ENDPOINT": "minio:9000",
    }
    with ServiceThread(test_settings("train", tmp_path, env), build) as service:
        stub = train_pb2_grpc.TrainServiceStub(service.channel())
        request = pb.RenderTrainingJobManifestRequest(
            training_job=pb.TrainingJob(name="trainingJobs/churn-1", resources=pb.Resources(devices=2, num_nodes=2)),
            image="ghcr.io/example/ferry-train:1",
            namespace="ml",
        )
        manifest = yaml.safe_load(stub.RenderTrainingJobManifest(request).yaml)
        assert manifest["kind"] == "PyTorchJob" and manifest["metadata"]["namespace"] == "ml"
        replicas = manifest["spec"]["pytorchReplicaSpecs"]
        assert replicas["Worker"]["replicas"] == 1
        bad = pb.RenderTrainingJobManifestRequest(training_job=pb.TrainingJob(name="churn-1"))
        error = failure(lambda: stub.RenderTrainingJobManifest(bad))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_field(error) == "training_job.name"


# ---------------------------------------------------------------- scheduler and worker


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[SqlTrainStore]:
    database = open_database(TrainConfig(database_url=f"sqlite:///{tmp_path / 'train.db'}"))
    yield SqlTrainStore(database)
    database.close()


def python(code: str) -> Callable[[str], list[str]]:
    return lambda job_id: [sys.executable, "-c", code]


async def until(check: Callable[[], bool], timeout: float = 15.0) -> float:
    """Seconds until ``check()`` held (fails after ``timeout``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def scheduler_for(store: SqlTrainStore, tmp_path: pathlib.Path, code: str, **options: Any) -> Scheduler:
    return Scheduler(
        store,
        store._database.runner,
        max_concurrent=options.pop("max_concurrent", 1),
        log_dir=tmp_path / "logs",
        environment=dict(os.environ),
        poll_seconds=0.05,
        command=python(code),
        **options,
    )


def spec() -> JobSpec:
    return spec_from_proto(job())


SLEEPER = "import time; time.sleep(60)"


def test_scheduler_runs_in_order_and_fails_with_the_last_log_lines(
    store: SqlTrainStore, tmp_path: pathlib.Path
) -> None:
    code = "import sys; print('loading data'); print('boom: out of memory', flush=True); sys.exit(3)"

    async def scenario() -> None:
        store.create("first", spec(), None)
        store.create("second", spec(), None)
        scheduler = scheduler_for(store, tmp_path, code)
        await scheduler.start()
        try:
            await until(lambda: store.get("second").state == FAILED)
        finally:
            await scheduler.stop()

    asyncio.run(scenario())
    first, second = store.get("first"), store.get("second")
    assert first.state == FAILED and "boom: out of memory" in first.error and "code 3" in first.error
    assert first.attempt == 1 and first.end_time is not None
    assert first.start_time is not None and second.start_time is not None
    assert first.start_time < second.start_time, "one at a time, oldest first"
    assert (tmp_path / "logs" / "first" / "attempt-1.log").read_text().startswith("loading data")


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_cancel_stops_the_worker_within_10_seconds(
    store: SqlTrainStore, tmp_path: pathlib.Path, ignores_sigterm: bool
) -> None:
    code = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignores_sigterm else "") + SLEEPER

    async def scenario() -> float:
        store.create("job", spec(), None)
        scheduler = scheduler_for(store, tmp_path, code, cancel_grace_seconds=1.0)
        await scheduler.start()
        try:
            await until(lambda: store.get("job").state == RUNNING)
            await asyncio.sleep(0.3)
            store.set_state("job", CANCELLING)
            scheduler.wake()
            return await until(lambda: store.get("job").state == CANCELLED, timeout=10)
        finally:
            await scheduler.stop()

    elapsed = asyncio.run(scenario())
    assert elapsed < 10
    assert store.get("job").state == CANCELLED


def test_jobs_of_a_dead_service_and_killed_workers_resume(store: SqlTrainStore, tmp_path: pathlib.Path) -> None:
    store.create("job", spec(), None)
    store.claim("job")  # left RUNNING by a service that died
    store.record_epoch("job", 0, {"val_loss": 1.0}, "file:///ckpt/0")

    async def scenario() -> None:
        scheduler = scheduler_for(store, tmp_path, SLEEPER)
        await scheduler.start()
        try:
            await until(lambda: store.get("job").state == RUNNING and store.get("job").attempt == 2)
            worker = scheduler._workers["job"]
            os.killpg(worker.process.pid, signal.SIGKILL)
            await until(lambda: store.get("job").attempt == 3 and store.get("job").state == RUNNING)
        finally:
            await scheduler.stop()

    asyncio.run(scenario())
    job_ = store.get("job")
    assert job_.state == QUEUED, "a stopping service leaves its jobs queued to resume"
    assert job_.checkpoint_uri == "file:///ckpt/0" and job_.current_epoch == 1
    messages = [e.payload.get("message", "") for e in store.events_since("job", 0, 100) if e.kind == "state"]
    assert any("restarted" in m for m in messages) and any("signal 9" in m for m in messages)


def test_max_concurrent_zero_runs_nothing(store: SqlTrainStore, tmp_path: pathlib.Path) -> None:
    async def scenario() -> None:
        store.create("job", spec(), None)
        scheduler = scheduler_for(store, tmp_path, SLEEPER, max_concurrent=0)
        await scheduler.start()
        scheduler.wake()
        await asyncio.sleep(0.3)
        await scheduler.stop()

    asyncio.run(scenario())
    assert store.get("job").state == QUEUED


def test_worker_records_the_runner_result_and_errors(
    store: SqlTrainStore, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def run_job(job_id: str, spec_: JobSpec, reporter: Any, **kwargs: Any) -> Any:
        calls.append({"job_id": job_id, "spec": spec_, **kwargs})
        reporter.log("info", "training")
        reporter.epoch(0, {"val_loss": 0.4}, "file:///ckpt/1")
        if job_id == "bad":
            raise RuntimeError("loss is NaN at epoch 1")
        return types.SimpleNamespace(model_version="models/penguins/versions/3", metrics={"val_loss": 0.4}, epochs=1)

    monkeypatch.setitem(sys.modules, "ferry_train.runner", types.SimpleNamespace(run_job=run_job))
    settings = test_settings("train", tmp_path)
    for job_id in ("good", "bad"):
        store.create(job_id, spec(), None)
        store.claim(job_id)
    store.record_epoch("good", 0, {}, "file:///ckpt/0")

    assert worker.run(settings, store, "good") == 0
    good = store.get("good")
    assert good.state == "SUCCEEDED" and good.model_version == "models/penguins/versions/3"
    assert good.metrics == {"val_loss": 0.4} and good.checkpoint_uri == "file:///ckpt/1"
    assert calls[0]["resume_from"] == "file:///ckpt/0" and calls[0]["spec"] == spec()
    kinds = [e.kind for e in store.events_since("good", 0, 100)]
    assert kinds == ["state", "state", "epoch", "log", "epoch", "state"]

    assert worker.run(settings, store, "bad") == 1
    bad = store.get("bad")
    assert bad.state == FAILED and "loss is NaN" in bad.error
    assert calls[1]["resume_from"] is None


def test_worker_process_names_a_missing_job(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "FERRY_STATE_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "none"}
    done = subprocess.run(
        [sys.executable, "-m", "ferry_train.worker", "--job", "trainingJobs/nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "trainingJobs/nope not found" in done.stderr


@pytest.mark.slow
def test_a_queued_job_runs_in_a_worker_process_and_fails_with_its_reason(
    ingest_address: str, tmp_path: pathlib.Path
) -> None:
    # Nothing listens on the registry address: the real worker trains, then fails registering.
    env = {
        "FERRY_INGEST_ADDRESS": ingest_address,
        "FERRY_REGISTRY_ADDRESS": closed_address(),
        "FERRY_TRAIN_POLL_MS": "100",
    }
    with ServiceThread(test_settings("train", tmp_path, env), build) as service:
        stub = train_pb2_grpc.TrainServiceStub(service.channel())
        one_epoch = job(hyperparameters__max_epochs=1)
        stub.CreateTrainingJob(pb.CreateTrainingJobRequest(training_job=one_epoch, training_job_id="job"), timeout=60)
        events = list(stub.WatchTrainingJob(pb.WatchTrainingJobRequest(name="trainingJobs/job"), timeout=180))
        ended = stub.GetTrainingJob(pb.GetTrainingJobRequest(name="trainingJobs/job"))
    states = [e.state_change.state for e in events if e.HasField("state_change")]
    assert states == [pb.TrainingJob.STATE_QUEUED, pb.TrainingJob.STATE_RUNNING, pb.TrainingJob.STATE_FAILED]
    assert ended.state == pb.TrainingJob.STATE_FAILED and ended.attempt == 1
    assert "UNAVAILABLE" in ended.error and "last log lines:" in ended.error and "Traceback" in ended.error
    assert (tmp_path / "train" / "logs" / "job" / "attempt-1.log").exists()


def test_a_drain_ends_open_watches(ingest_address: str, tmp_path: pathlib.Path) -> None:
    env = {"FERRY_INGEST_ADDRESS": ingest_address, "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0", "FERRY_TRAIN_POLL_MS": "50"}
    service = ServiceThread(test_settings("train", tmp_path, env), build).start()
    try:
        stub = train_pb2_grpc.TrainServiceStub(service.channel())
        stub.CreateTrainingJob(pb.CreateTrainingJobRequest(training_job=job(), training_job_id="job"), timeout=60)
        stream = stub.WatchTrainingJob(pb.WatchTrainingJobRequest(name="trainingJobs/job"), timeout=60)
        first = next(stream)
        assert first.state_change.state == pb.TrainingJob.STATE_QUEUED
        started = time.monotonic()
        stopping = service.begin_stop(grace=30)
        assert list(stream) == []
        stopping.result(timeout=30)
        assert time.monotonic() - started < 10, "the watch ended with the drain, not at the grace period"
    finally:
        service.stop()
