"""CreateTrainingJob refuses a job whose data cannot train, before anything is stored.

A real ingest process holds the penguins data (a raw version without splits and a split
version); train runs in-process with ``FERRY_TRAIN_MAX_CONCURRENT_JOBS=0`` so nothing trains.
Each refusal is checked for its code, the field it names, and an empty job list.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings
from ferry_sdk import IngestClient
from ferry_sdk.spawn import ServiceProcess, closed_address, free_port, spawn_and_wait
from ferry_train.__main__ import build

palmerpenguins = pytest.importorskip("palmerpenguins")

SPLIT_RECIPE = {
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


class Datasets:
    def __init__(self, address: str, raw: str, split: str) -> None:
        self.address = address
        self.raw = raw
        self.split = split


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datasets]:
    state = tmp_path_factory.mktemp("ingest")
    env = {
        "FERRY_INGEST_ADDRESS": f"127.0.0.1:{free_port()}",
        "FERRY_STATE_DIR": str(state),
        "OTEL_TRACES_EXPORTER": "none",
    }
    process: ServiceProcess = spawn_and_wait("ingest", env=env, log_path=state / "ingest.log", timeout=120)
    try:
        frame = palmerpenguins.load_penguins()
        frame["constant"] = "same"  # a string target with one class
        frame["one"] = 1  # a numeric target with one class
        with IngestClient(process.address) as ingest:
            raw = ingest.upload_dataset("penguins-raw", frame)
            split = ingest.transform_dataset(raw.name, "penguins", SPLIT_RECIPE)
        yield Datasets(process.address, raw.name, split.name)
    finally:
        process.stop()


def job(datasets: Datasets, **changes: Any) -> pb.TrainingJob:
    message = pb.TrainingJob(
        dataset_version=datasets.split,
        training_split="train",
        validation_split="validation",
        target="species",
        task=pb.TASK_CLASSIFICATION,
        model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[8])),
        resources=pb.Resources(accelerator="cpu", devices=1),
        register_model="models/penguins",
    )
    for name, value in changes.items():
        if isinstance(value, list):
            getattr(message, name).extend(value)
        elif isinstance(value, pb.ModelSpec):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


@pytest.fixture
def train_for(tmp_path: pathlib.Path) -> Iterator[Any]:
    started: list[ServiceThread] = []

    def start(ingest_address: str) -> train_pb2_grpc.TrainServiceStub:
        env = {
            "FERRY_TRAIN_DATABASE_URL": f"sqlite:///{tmp_path / f'train-{len(started)}.db'}",
            "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0",
            "FERRY_INGEST_ADDRESS": ingest_address,
        }
        service = ServiceThread(test_settings("train", tmp_path, env), build).start()
        started.append(service)
        return train_pb2_grpc.TrainServiceStub(service.channel())

    yield start
    for service in started:
        service.stop()


def refused(stub: train_pb2_grpc.TrainServiceStub, training_job: pb.TrainingJob) -> grpc.RpcError:
    request = pb.CreateTrainingJobRequest(training_job_id="refused", training_job=training_job)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateTrainingJob(request, timeout=60)
    assert not stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), timeout=30).training_jobs, "a job was stored"
    return caught.value


def violated_field(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error.details()
    request = error_details_pb2.BadRequest()
    status.details[0].Unpack(request)
    return str(request.field_violations[0].field)


CASES = [
    pytest.param(
        {"dataset_version": "datasets/penguins/versions/9"},
        grpc.StatusCode.NOT_FOUND,
        "training_job.dataset_version",
        id="unknown-version",
    ),
    pytest.param(
        {"dataset_version": "datasets/no-such-data/versions/1"},
        grpc.StatusCode.NOT_FOUND,
        "training_job.dataset_version",
        id="unknown-dataset",
    ),
    pytest.param(
        {"training_split": "test"}, grpc.StatusCode.NOT_FOUND, "training_job.training_split", id="unknown-train-split"
    ),
    pytest.param(
        {"validation_split": "holdout"},
        grpc.StatusCode.NOT_FOUND,
        "training_job.validation_split",
        id="unknown-validation-split",
    ),
    pytest.param({"target": "wingspan"}, grpc.StatusCode.INVALID_ARGUMENT, "training_job.target", id="unknown-target"),
    pytest.param(
        {"features": ["bill_length_mm", "wingspan"]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "training_job.features[1]",
        id="unknown-feature",
    ),
    pytest.param(
        {"target": "island", "task": pb.TASK_REGRESSION},
        grpc.StatusCode.INVALID_ARGUMENT,
        "training_job.target",
        id="string-target-for-regression",
    ),
    pytest.param(
        {"target": "constant"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "training_job.target",
        id="string-target-with-one-class",
    ),
    pytest.param(
        {"target": "one"}, grpc.StatusCode.INVALID_ARGUMENT, "training_job.target", id="numeric-target-with-one-class"
    ),
]


@pytest.mark.parametrize(("changes", "code", "field"), CASES)
def test_bad_data_is_refused_naming_the_field(
    datasets: Datasets, train_for: Any, changes: dict[str, Any], code: grpc.StatusCode, field: str
) -> None:
    stub = train_for(datasets.address)
    error = refused(stub, job(datasets, **changes))
    assert error.code() == code, error.details()
    assert violated_field(error) == field
    assert field in error.details()


def test_a_version_without_splits_has_no_training_split(datasets: Datasets, train_for: Any) -> None:
    stub = train_for(datasets.address)
    error = refused(stub, job(datasets, dataset_version=datasets.raw))
    assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    assert violated_field(error) == "training_job.training_split"
    assert "'train'" in error.details()


def test_good_data_is_queued(datasets: Datasets, train_for: Any) -> None:
    stub = train_for(datasets.address)
    regression = job(datasets, target="body_mass_g", task=pb.TASK_REGRESSION, features=["island", "sex"])
    for job_id, training_job in (("classify", job(datasets)), ("regress", regression)):
        created = stub.CreateTrainingJob(
            pb.CreateTrainingJobRequest(training_job_id=job_id, training_job=training_job), timeout=60
        )
        assert created.state == pb.TrainingJob.STATE_QUEUED
    names = {j.name for j in stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), timeout=30).training_jobs}
    assert names == {"trainingJobs/classify", "trainingJobs/regress"}


def test_ingest_down_is_unavailable(datasets: Datasets, train_for: Any) -> None:
    stub = train_for(closed_address())  # nothing listens there
    error = refused(stub, job(datasets))
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert "ingest" in error.details()


# ----------------------------------------------------------------- custom LightningModules

USER_MODELS = """
import pytorch_lightning as pl
import torch


class TinyNet(pl.LightningModule):
    def __init__(self, n_inputs: int, n_outputs: int, learning_rate: float, width: int = 4) -> None:
        super().__init__()
        layers = [torch.nn.Linear(n_inputs, width), torch.nn.ReLU(), torch.nn.Linear(width, n_outputs)]
        self.net = torch.nn.Sequential(*layers)
        self.learning_rate = learning_rate

    def forward(self, x):
        return self.net(x)


class NotAModule:
    def __init__(self, n_inputs: int) -> None:
        self.n_inputs = n_inputs
"""


@pytest.fixture(scope="module")
def user_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A user's package, importable by the service (and its workers) through PYTHONPATH."""
    root = tmp_path_factory.mktemp("user-code")
    package = root / "penguin_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_MODELS)
    (package / "broken.py").write_text("import a_module_nobody_installed\n")
    (package / "exits.py").write_text("import sys\nsys.exit(3)\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(root))
        yield root


def custom(entry_point: str, **init_args: str) -> pb.ModelSpec:
    return pb.ModelSpec(custom=pb.CustomModel(entry_point=entry_point, init_args=init_args))


CUSTOM_CASES = [
    pytest.param(custom("penguin_models.nets"), "training_job.model.custom.entry_point", id="no-class"),
    pytest.param(custom("no_such_package.nets:TinyNet"), "training_job.model.custom.entry_point", id="no-module"),
    pytest.param(custom("penguin_models.nets:Missing"), "training_job.model.custom.entry_point", id="no-attribute"),
    pytest.param(custom("penguin_models.nets:NotAModule"), "training_job.model.custom.entry_point", id="not-a-module"),
    pytest.param(custom("penguin_models.broken:Net"), "training_job.model.custom.entry_point", id="import-fails"),
    pytest.param(custom("penguin_models.exits:Net"), "training_job.model.custom.entry_point", id="import-exits"),
    pytest.param(
        custom("penguin_models.nets:TinyNet", width="four"),
        "training_job.model.custom.init_args['width']",
        id="not-json",
    ),
    pytest.param(
        custom("penguin_models.nets:TinyNet", n_inputs="3"),
        "training_job.model.custom.init_args['n_inputs']",
        id="reserved",
    ),
    pytest.param(
        custom("penguin_models.nets:TinyNet", colour='"red"'),
        "training_job.model.custom.init_args",
        id="unknown-argument",
    ),
]


@pytest.mark.parametrize(("model", "field"), CUSTOM_CASES)
def test_a_bad_custom_model_is_refused_naming_the_field(
    datasets: Datasets, train_for: Any, user_code: pathlib.Path, model: pb.ModelSpec, field: str
) -> None:
    stub = train_for(datasets.address)
    error = refused(stub, job(datasets, model=model))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert violated_field(error) == field
    assert field.split("[")[0] in error.details()


def test_a_custom_model_that_imports_is_queued_and_shown_as_asked(
    datasets: Datasets, train_for: Any, user_code: pathlib.Path
) -> None:
    stub = train_for(datasets.address)
    model = custom("penguin_models.nets:TinyNet", width="8")
    request = pb.CreateTrainingJobRequest(training_job_id="tiny", training_job=job(datasets, model=model))
    created = stub.CreateTrainingJob(request, timeout=60)
    assert created.state == pb.TrainingJob.STATE_QUEUED
    fetched = stub.GetTrainingJob(pb.GetTrainingJobRequest(name=created.name), timeout=30)
    assert fetched.model.custom.entry_point == "penguin_models.nets:TinyNet"
    assert dict(fetched.model.custom.init_args) == {"width": "8"}
