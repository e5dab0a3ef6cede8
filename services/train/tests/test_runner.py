"""run_job end to end against real ingest and registry processes, on the Palmer penguins.

The data (nulls, string categoricals) ships inside the ``palmerpenguins`` package;
ingest splits it with a seeded recipe; checkpoints go to a local object store.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import pandas as pd
import pytest
from palmerpenguins import load_penguins

from ferry_common.errors import InvalidArgument, NotFound
from ferry_common.objectstore import LocalObjectStore
from ferry_sdk import IngestClient, RegistryClient
from ferry_sdk.spawn import free_port, spawn_and_wait
from ferry_train.pipeline import TabularMlp, Task, fit_preprocessor, predict_onnx, verify_export
from ferry_train.runner import RunResult, TrainingDiverged, run_job
from ferry_train.spec import Hyperparameters, JobSpec, MlpSpec

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*",
    "ignore:.*LeafSpec.*",
    "ignore:The dirpath has changed.*",
)

EPOCHS = 2
SEED = 11
# Every column but the target, in the data's order.
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


@dataclass
class MemoryReporter:
    """Keeps what a run reports, in order."""

    logs: list[tuple[str, str]] = field(default_factory=list)
    epochs: list[tuple[int, dict[str, float], str]] = field(default_factory=list)

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def epoch(self, epoch: int, metrics: Mapping[str, float], checkpoint_uri: str) -> None:
        self.epochs.append((epoch, dict(metrics), checkpoint_uri))


@dataclass
class Stack:
    ingest: IngestClient
    registry: RegistryClient
    objects: LocalObjectStore
    dataset_version: str
    workdir: pathlib.Path

    def run(self, job_id: str, spec: JobSpec, resume_from: str | None = None) -> tuple[RunResult, MemoryReporter]:
        reporter = MemoryReporter()
        result = run_job(
            job_id,
            spec,
            reporter,
            ingest=self.ingest,
            registry=self.registry,
            objects=self.objects,
            workdir=self.workdir / job_id,
            resume_from=resume_from,
        )
        return result, reporter

    def split(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = self.ingest.read_dataset_frame(self.dataset_version, split=name)
        return frame


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("state")
    processes = {}
    for service in ("ingest", "registry"):
        env = {
            "FERRY_STATE_DIR": str(state),
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_LOG_LEVEL": "warning",
            f"FERRY_{service.upper()}_ADDRESS": f"127.0.0.1:{free_port()}",
        }
        processes[service] = spawn_and_wait(service, env=env, cwd=state, log_path=state / f"{service}.log")
    try:
        with (
            IngestClient(processes["ingest"].address) as ingest,
            RegistryClient(processes["registry"].address) as registry,
        ):
            raw = ingest.upload_dataset("penguins", load_penguins())
            recipe = {
                "steps": [
                    {
                        "split": {
                            "fractions": [{"name": "train", "fraction": 0.7}, {"name": "validation", "fraction": 0.3}],
                            "seed": 7,
                            "stratify_column": "species",
                        }
                    }
                ]
            }
            version = ingest.transform_dataset(raw.name, "penguins-split", recipe)
            yield Stack(
                ingest=ingest,
                registry=registry,
                objects=LocalObjectStore(tmp_path_factory.mktemp("objects")),
                dataset_version=version.name,
                workdir=tmp_path_factory.mktemp("work"),
            )
    finally:
        for process in processes.values():
            process.stop()


@pytest.fixture(scope="module")
def spec(stack: Stack) -> JobSpec:
    return JobSpec(
        dataset_version=stack.dataset_version,
        training_split="train",
        validation_split="validation",
        target="species",
        task="classification",
        register_model="models/penguins",
        mlp=MlpSpec(hidden_units=(16,), dropout=0.0),
        hyperparameters=Hyperparameters(max_epochs=EPOCHS, batch_size=32, learning_rate=0.01, seed=SEED),
        code_revision="abc123",
    )


@dataclass
class FirstRun:
    result: RunResult
    reporter: MemoryReporter


@pytest.fixture(scope="module")
def first(stack: Stack, spec: JobSpec) -> FirstRun:
    result, reporter = stack.run("penguins-1", spec)
    return FirstRun(result, reporter)


def test_job_registers_a_version_with_lineage_metrics_params_and_signature(
    stack: Stack, spec: JobSpec, first: FirstRun
) -> None:
    result = first.result
    assert result.model_version == "models/penguins/versions/1"
    assert result.epochs == EPOCHS
    assert [epoch for epoch, _, _ in first.reporter.epochs] == list(range(EPOCHS))
    # The result's metrics are the last epoch's.
    assert result.metrics == first.reporter.epochs[-1][1]
    assert set(result.metrics) == {"train_loss", "val_loss", "val_accuracy"}
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0
    assert any("matches PyTorch" in message for _, message in first.reporter.logs)

    version = stack.registry.get_model_version(result.model_version)
    assert version.lineage.dataset_version == stack.dataset_version
    assert version.lineage.split == "train"
    assert version.lineage.training_job == "trainingJobs/penguins-1"
    assert version.lineage.code_revision == "abc123"
    assert dict(version.metrics) == pytest.approx(result.metrics)
    params = dict(version.params)
    assert params["seed"] == str(SEED)
    assert params["max_epochs"] == str(EPOCHS)
    assert params["hidden_units"] == "[16]"
    assert params["target"] == "species" and params["task"] == "classification"
    assert json.loads(params["features"]) == FEATURES
    for package in ("torch", "pytorch-lightning", "scikit-learn", "onnx"):
        assert params[f"version.{package}"][0].isdigit(), package

    inputs = {spec_.name: (spec_.datatype, list(spec_.shape)) for spec_ in version.signature.inputs}
    assert list(inputs) == FEATURES
    assert inputs["island"] == ("BYTES", [-1, 1]) and inputs["sex"] == ("BYTES", [-1, 1])
    assert inputs["body_mass_g"] == ("FP32", [-1, 1]) and inputs["year"] == ("FP32", [-1, 1])
    outputs = {spec_.name: (spec_.datatype, list(spec_.shape)) for spec_ in version.signature.outputs}
    assert outputs == {"probabilities": ("FP32", [-1, 3]), "label": ("BYTES", [-1, 1])}


def test_registered_onnx_answers_like_the_pytorch_pipeline_on_raw_rows(stack: Stack, first: FirstRun) -> None:
    artifact = stack.registry.download_model_version(first.result.model_version)
    train, validation = stack.split("train"), stack.split("validation")
    assert validation.isna().any().any()  # raw rows, nulls included
    # The same training split gives the same fitted pre-processing; the weights are the
    # stored checkpoint of the last epoch.
    preprocessor = fit_preprocessor(train, target="species", features=[], task=Task.CLASSIFICATION)
    with stack.objects.open_local(
        f"training-jobs/penguins-1/checkpoints/epoch={EPOCHS - 1}.ckpt", stack.workdir
    ) as path:
        module = TabularMlp.load_from_checkpoint(path, map_location="cpu")
    report = verify_export(artifact, preprocessor, module, validation)
    assert report.rows == len(validation) and report.labels_equal == len(validation)
    labels = predict_onnx(artifact, preprocessor, validation).labels
    assert labels is not None and set(labels.reshape(-1)) <= {"Adelie", "Chinstrap", "Gentoo"}


def test_every_epoch_has_its_checkpoint_in_the_store(stack: Stack, first: FirstRun) -> None:
    prefix = "training-jobs/penguins-1/checkpoints"
    keys = stack.objects.list(prefix)
    for epoch, _, uri in first.reporter.epochs:
        key = f"{prefix}/epoch={epoch}.ckpt"
        assert key in keys
        assert uri == stack.objects.uri(key)
    assert f"{prefix}/last.ckpt" in keys


def test_the_same_job_again_registers_no_second_version(stack: Stack, spec: JobSpec, first: FirstRun) -> None:
    # A retry after a crash after the last epoch: resumed from last.ckpt (by key), it
    # trains nothing, and the request id finds the version the first attempt made.
    result, reporter = stack.run("penguins-1", spec, resume_from="training-jobs/penguins-1/checkpoints/last.ckpt")
    assert reporter.epochs == []
    assert result.model_version == first.result.model_version
    assert result.epochs == EPOCHS
    assert result.metrics == pytest.approx(first.result.metrics)
    assert [v.name for v in stack.registry.list_model_versions("penguins")] == [first.result.model_version]


def test_resume_trains_only_the_remaining_epochs(stack: Stack, spec: JobSpec, first: FirstRun) -> None:
    checkpoint_uri = first.reporter.epochs[-1][2]  # epoch 1: the second and last of the first run
    longer = replace(spec, hyperparameters=replace(spec.hyperparameters, max_epochs=EPOCHS + 1))
    result, reporter = stack.run("penguins-2", longer, resume_from=checkpoint_uri)
    assert [epoch for epoch, _, _ in reporter.epochs] == [EPOCHS]
    assert result.epochs == EPOCHS + 1
    assert result.metrics == reporter.epochs[-1][1]
    version = stack.registry.get_model_version(result.model_version)
    assert version.params["max_epochs"] == str(EPOCHS + 1)
    assert stack.objects.exists(f"training-jobs/penguins-2/checkpoints/epoch={EPOCHS}.ckpt")
    # Same seed, dropout 0: the resumed run ends where an uninterrupted one does.
    uninterrupted, _ = stack.run("penguins-3", longer)
    assert result.metrics == pytest.approx(uninterrupted.metrics, abs=1e-6)


@pytest.mark.parametrize(
    ("change", "error", "field_name"),
    [
        ({"training_split": "training"}, NotFound, "training_job.training_split"),
        ({"validation_split": "holdout"}, NotFound, "training_job.validation_split"),
        ({"dataset_version": "datasets/penguins-split/versions/9"}, NotFound, "training_job.dataset_version"),
        ({"dataset_version": "datasets/no-such/versions/1"}, NotFound, "training_job.dataset_version"),
        ({"target": "beak"}, InvalidArgument, "training_job.target"),
        ({"features": ("island", "wings")}, InvalidArgument, "training_job.features[1]"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    stack: Stack, spec: JobSpec, change: dict[str, object], error: type[Exception], field_name: str
) -> None:
    reporter = MemoryReporter()
    with pytest.raises(error) as raised:
        run_job(
            "penguins-bad",
            replace(spec, **change),  # type: ignore[arg-type]
            reporter,
            ingest=stack.ingest,
            registry=stack.registry,
            objects=stack.objects,
            workdir=stack.workdir / "bad",
        )
    assert getattr(raised.value, "field", None) == field_name
    assert reporter.epochs == []
    assert stack.objects.list("training-jobs/penguins-bad") == []


def test_a_diverged_run_fails_before_storing_its_checkpoint(stack: Stack, spec: JobSpec) -> None:
    exploding = replace(
        spec,
        target="body_mass_g",
        task="regression",
        hyperparameters=replace(spec.hyperparameters, learning_rate=1e12),
    )
    with pytest.raises(TrainingDiverged, match=r"epoch 0: .*training diverged") as raised:
        stack.run("penguins-nan", exploding)
    assert "learning_rate" in str(raised.value)
    assert stack.objects.list("training-jobs/penguins-nan") == []
