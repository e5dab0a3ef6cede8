"""The worker's ranks: who claims a queued job and who records the outcome (no training here)."""

from __future__ import annotations

import pathlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from ferry.train.v1 import train_pb2 as pb
from ferry_common.testing import test_settings
from ferry_train import worker
from ferry_train.config import TrainConfig
from ferry_train.messages import spec_from_proto
from ferry_train.spec import JobSpec
from ferry_train.store import SqlTrainStore, open_database
from ferry_train.store.base import QUEUED, RUNNING, SUCCEEDED


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[SqlTrainStore]:
    database = open_database(TrainConfig(database_url=f"sqlite:///{tmp_path / 'train.db'}"))
    yield SqlTrainStore(database)
    database.close()


def spec() -> JobSpec:
    return spec_from_proto(
        pb.TrainingJob(
            dataset_version="datasets/penguins/versions/1",
            training_split="train",
            validation_split="validation",
            target="species",
            task=pb.TASK_CLASSIFICATION,
            model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[8])),
            hyperparameters=pb.Hyperparameters(max_epochs=2, batch_size=32, learning_rate=0.01, seed=7),
            resources=pb.Resources(accelerator="cpu", devices=2, strategy="ddp"),
            register_model="models/penguins",
        )
    )


def fake_ranks(monkeypatch: pytest.MonkeyPatch, *, lightning_rank: int, version: str, fail: bool = False) -> None:
    """A runner that returns ``version`` (or fails), and Lightning's rank as a Trainer set it."""

    def run_job(job_id: str, spec_: JobSpec, reporter: Any, **kwargs: Any) -> Any:
        reporter.log("info", "training")
        if fail:
            raise RuntimeError("gloo: connection reset")
        return types.SimpleNamespace(model_version=version, metrics={"val_loss": 0.4}, epochs=2)

    monkeypatch.setitem(sys.modules, "ferry_train.runner", types.SimpleNamespace(run_job=run_job))
    rank_zero = types.SimpleNamespace(rank_zero_only=types.SimpleNamespace(rank=lightning_rank))
    monkeypatch.setitem(sys.modules, "pytorch_lightning.utilities.rank_zero", rank_zero)


@pytest.mark.parametrize(
    ("environ", "rank"),
    [
        ({}, 0),
        ({"RANK": "1", "LOCAL_RANK": "0"}, 1),  # torchrun, second node
        ({"RANK": "0", "LOCAL_RANK": "0"}, 0),
        ({"LOCAL_RANK": "1"}, 1),  # started by Lightning for devices > 1: no RANK
    ],
)
def test_launch_rank(environ: dict[str, str], rank: int) -> None:
    assert worker.launch_rank(environ) == rank


def test_rank_zero_claims_a_queued_job_and_records_it_once(
    store: SqlTrainStore, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ranks(monkeypatch, lightning_rank=0, version="models/penguins/versions/1")
    store.create("job", spec(), None)

    assert worker.run(test_settings("train", tmp_path), store, "job", rank=0) == 0
    job = store.get("job")
    assert job.state == SUCCEEDED and job.attempt == 1 and job.model_version == "models/penguins/versions/1"
    states = [e.payload["state"] for e in store.events_since("job", 0, 100) if e.kind == "state"]
    assert states == [QUEUED, RUNNING, SUCCEEDED]


def test_other_ranks_neither_claim_nor_record(
    store: SqlTrainStore, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = test_settings("train", tmp_path)
    store.create("queued", spec(), None)
    fake_ranks(monkeypatch, lightning_rank=1, version="")
    assert worker.run(settings, store, "queued", rank=1) == 0
    assert store.get("queued").state == QUEUED

    # Started by Lightning without RANK: the launcher's rank looked like 0, Lightning's is 1.
    store.create("running", spec(), None)
    store.claim("running")
    assert worker.run(settings, store, "running", rank=0) == 0
    fake_ranks(monkeypatch, lightning_rank=1, version="", fail=True)
    assert worker.run(settings, store, "running", rank=0) == 1
    job = store.get("running")
    assert job.state == RUNNING and job.model_version == "" and job.error == ""
    assert [e.kind for e in store.events_since("running", 0, 100)] == ["state", "state"]
