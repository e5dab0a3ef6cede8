"""A training job end to end: real ingest, registry and train processes, the user's path.

Upload the penguins data (nulls, string categoricals), split it with a recipe, create a
job through TrainService, watch it to SUCCEEDED, and find the registered version in the
registry with its lineage, metrics and signature; its ONNX answers raw rows.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from importlib.metadata import version as version_of

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_sdk import IngestClient, RegistryClient, TrainClient
from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all

pytestmark = pytest.mark.slow
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


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[dict[str, ServiceProcess]]:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "ingest", "train")}
    common = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    common |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json"}
    # Where a user's own LightningModules live (see the custom-model test).
    (tmp_path / "user-code").mkdir()
    common["PYTHONPATH"] = str(tmp_path / "user-code")
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("registry", "ingest", "train"):
            env = {**common, "FERRY_STATE_DIR": str(tmp_path / name), "FERRY_TRAIN_POLL_MS": "100"}
            started[name] = spawn_and_wait(name, env=env, log_path=tmp_path / f"{name}.log", timeout=120)
        yield started
    finally:
        stop_all(started.values())


def test_a_training_job_goes_from_a_dataset_to_a_registered_onnx_model(
    stack: dict[str, ServiceProcess], tmp_path: pathlib.Path
) -> None:
    frame = palmerpenguins.load_penguins()
    with IngestClient(stack["ingest"].address) as ingest, RegistryClient(stack["registry"].address) as registry:
        raw = ingest.upload_dataset("penguins", frame)
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

        # TrainService has no SDK client yet: its generated stub, as any grpc user would.
        channel = grpc.insecure_channel(stack["train"].address)
        train = train_pb2_grpc.TrainServiceStub(channel)
        job = pb.TrainingJob(
            dataset_version=split.name,
            training_split="train",
            validation_split="validation",
            target="species",
            task=pb.TASK_CLASSIFICATION,
            model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[16], dropout=0.0)),
            hyperparameters=pb.Hyperparameters(max_epochs=3, batch_size=32, learning_rate=0.01, seed=3),
            resources=pb.Resources(accelerator="cpu", devices=1),
            register_model="models/penguins",
            code_revision="e2e-test",
        )
        created = train.CreateTrainingJob(
            pb.CreateTrainingJobRequest(training_job_id="penguins-1", training_job=job, request_id="e2e-1"), timeout=30
        )
        assert created.state == pb.TrainingJob.STATE_QUEUED

        events = list(train.WatchTrainingJob(pb.WatchTrainingJobRequest(name=created.name), timeout=300))
        states = [e.state_change.state for e in events if e.HasField("state_change")]
        epochs = [e.epoch.epoch for e in events if e.HasField("epoch")]
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # gap-free
        finished = train.GetTrainingJob(pb.GetTrainingJobRequest(name=created.name), timeout=30)
        assert finished.state == pb.TrainingJob.STATE_SUCCEEDED, finished.error
        assert states[-1] == pb.TrainingJob.STATE_SUCCEEDED and pb.TrainingJob.STATE_RUNNING in states
        assert epochs == [0, 1, 2]

        version = registry.get_model_version(finished.model_version)
        assert version.lineage.dataset_version == split.name
        assert version.lineage.split == "train"
        assert version.lineage.training_job == created.name
        assert version.lineage.code_revision == "e2e-test"
        assert version.params["seed"] == "3"
        assert set(finished.metrics) <= set(version.metrics) and "val_accuracy" in version.metrics
        inputs = {t.name: (t.datatype, list(t.shape)) for t in version.signature.inputs}
        assert inputs["island"] == ("BYTES", [-1, 1]) and inputs["bill_length_mm"] == ("FP32", [-1, 1])
        assert {t.name for t in version.signature.outputs} == {"probabilities", "label"}

        # The registered artifact answers raw rows, nulls included, with class names.
        session = ort.InferenceSession(registry.download_model_version(version.name))
        rows = frame.drop(columns=["species"]).head(5)
        feeds = {}
        for spec in version.signature.inputs:
            column = rows[spec.name]
            if spec.datatype == "BYTES":
                feeds[spec.name] = column.fillna("").astype(str).to_numpy(dtype=object).reshape(-1, 1)
            else:
                feeds[spec.name] = column.astype("float32").to_numpy().reshape(-1, 1)
        probabilities, labels = session.run(["probabilities", "label"], feeds)
        assert probabilities.shape == (5, 3)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert set(np.asarray(labels).ravel()) <= {"Adelie", "Chinstrap", "Gentoo"}


WIDE_AND_DEEP = '''
"""A user's own model: a linear part plus a small network, for regression or classification."""

import pytorch_lightning as pl
import torch
from torch.nn import functional as F


class WideAndDeep(pl.LightningModule):
    def __init__(self, n_inputs, n_outputs, task, learning_rate, target_mean, target_std, width=8):
        super().__init__()
        self.save_hyperparameters()
        self.wide = torch.nn.Linear(n_inputs, n_outputs)
        self.deep = torch.nn.Sequential(
            torch.nn.Linear(n_inputs, width), torch.nn.Tanh(), torch.nn.Linear(width, n_outputs)
        )
        self.register_buffer("mean", torch.tensor(float(target_mean)))
        self.register_buffer("std", torch.tensor(float(target_std)))

    def forward(self, x):
        out = self.wide(x) + self.deep(x)
        return out * self.std + self.mean if self.hparams.task == "regression" else out

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x) / self.std, y / self.std)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_mae", (self(x) - y).abs().mean(), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)
'''


def test_a_custom_lightning_module_trains_exports_and_repeats_to_the_same_metrics(
    stack: dict[str, ServiceProcess], tmp_path: pathlib.Path
) -> None:
    # The user's code, importable by train's workers through the service's PYTHONPATH.
    package = tmp_path / "user-code" / "penguin_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "wide.py").write_text(WIDE_AND_DEEP)

    frame = palmerpenguins.load_penguins()
    with IngestClient(stack["ingest"].address) as ingest:
        raw = ingest.upload_dataset("penguins", frame)
        split = ingest.transform_dataset(raw.name, "penguins-split", SPLIT_RECIPE)
    settings = {
        "dataset_version": split.name,
        "target": "body_mass_g",
        "task": "regression",
        "custom_model": "penguin_models.wide:WideAndDeep",
        "init_args": {"width": 6},
        "max_epochs": 2,
        "batch_size": 32,
        "learning_rate": 0.01,
        "seed": 11,
        "register_model": "penguin-mass",
    }
    with TrainClient(stack["train"].address) as train, RegistryClient(stack["registry"].address) as registry:
        first = train.create_training_job("mass-1", **settings)
        second = train.create_training_job("mass-2", **settings)
        done = [train.wait_for(job.name, timeout=600) for job in (first, second)]
        assert [job.state for job in done] == [pb.TrainingJob.STATE_SUCCEEDED] * 2, [job.error for job in done]
        assert done[0].model.custom.entry_point == "penguin_models.wide:WideAndDeep"
        assert set(done[0].metrics) >= {"train_loss", "val_mae"}
        assert done[0].package_versions["torch"] == version_of("torch")
        # Reproducible on CPU: the same spec on the same data gives the same metrics.
        for name, value in done[0].metrics.items():
            assert done[1].metrics[name] == pytest.approx(value, abs=1e-6), name

        version = registry.get_model_version(done[0].model_version)
        assert version.params["model"] == "penguin_models.wide:WideAndDeep"
        assert version.params["init_args"] == '{"width": "6"}'
        assert version.params["seed"] == "11" and version.params["version.torch"]
        assert [t.name for t in version.signature.outputs] == ["prediction"]
        session = ort.InferenceSession(registry.download_model_version(version.name))
        rows = frame.drop(columns=["body_mass_g"]).dropna().head(4)
        feeds = {
            spec.name: (
                rows[spec.name].astype(str).to_numpy(dtype=object).reshape(-1, 1)
                if spec.datatype == "BYTES"
                else rows[spec.name].astype("float32").to_numpy().reshape(-1, 1)
            )
            for spec in version.signature.inputs
        }
        (prediction,) = session.run(["prediction"], feeds)
        assert prediction.shape == (4, 1)
        assert np.all((prediction > 1000) & (prediction < 10000)), prediction  # grams of penguin
