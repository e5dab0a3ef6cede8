"""Drift to retraining end to end: real registry, ingest, train and monitor processes, public contracts only.

A dataset is uploaded and split, a tiny model is trained on its ``train`` split through
TrainService and registered with its lineage. Inputs recorded for that version through
RecordInferences (shaped as serve samples them) that look like the training data do not
drift; then a newer version of the dataset appears, the model's policy asks for
retraining, and shifted inputs make GetDriftReport find drift: monitor starts a real
training job through train with the spec of the job that produced the version on the
newest dataset version, once (a second report of the same breach starts nothing), and
the drift alert names that job.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry.train.v1 import train_pb2
from ferry_sdk import IngestClient, RegistryClient, TrainClient
from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all

pytestmark = pytest.mark.slow

SERVICES = ("registry", "ingest", "train", "monitor")
SPLIT_RECIPE = {
    "steps": [
        {
            "split": {
                "fractions": [{"name": "train", "fraction": 0.8}, {"name": "validation", "fraction": 0.2}],
                "seed": 7,
                "stratify_column": "churned",
            }
        }
    ]
}


def customers(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, rows).round(1)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    spend = rng.lognormal(4, 0.5, rows).round(2)
    churned = np.where((age < 35) & (plan == "basic"), "yes", "no")
    return pd.DataFrame({"age": age, "plan": plan, "spend": spend, "churned": churned})


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[dict[str, ServiceProcess]]:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    common = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    common |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json", "FERRY_TRAIN_POLL_MS": "100"}
    # Drift is judged on GetDriftReport here; the periodic evaluation is tested in services/monitor.
    common |= {"FERRY_MONITOR_DRIFT_EVALUATE_SECONDS": "3600", "FERRY_MONITOR_DRIFT_MIN_SAMPLES": "100"}
    started: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            env = {**common, "FERRY_STATE_DIR": str(tmp_path / name)}
            started[name] = spawn_and_wait(name, env=env, log_path=tmp_path / f"{name}.log", timeout=120)
        yield started
    finally:
        stop_all(started.values())


def samples(frame: pd.DataFrame, model_version: str, batch: int = 8) -> list[pb.InferenceRecord]:
    """Rows as serve samples them: per request, the values of each input by name, one per row."""
    records = []
    features = frame.drop(columns=["churned"])
    for start in range(0, len(features), batch):
        chunk = features.iloc[start : start + batch]
        inputs, outputs = struct_pb2.Struct(), struct_pb2.Struct()
        inputs.update({name: chunk[name].tolist() for name in chunk.columns})
        outputs.update({"label": ["no"] * len(chunk), "probabilities": [[0.7, 0.3]] * len(chunk)})
        stamp = timestamp_pb2.Timestamp()
        stamp.FromNanoseconds(time.time_ns())
        records.append(
            pb.InferenceRecord(
                request_id=f"req-{start}-{time.time_ns()}",
                deployment="deployments/churn",
                model_version=model_version,
                route="primary",
                time=stamp,
                inputs=inputs,
                outputs=outputs,
                latency_ms=1.5,
            )
        )
    return records


def since(start_ns: int) -> pb.TimeWindow:
    start = timestamp_pb2.Timestamp()
    start.FromNanoseconds(start_ns)
    return pb.TimeWindow(start_time=start)


def test_drift_breach_starts_one_retraining_job_named_by_the_alert(
    stack: dict[str, ServiceProcess], tmp_path: pathlib.Path
) -> None:
    with (
        IngestClient(stack["ingest"].address) as ingest,
        RegistryClient(stack["registry"].address) as registry,
        TrainClient(stack["train"].address) as train,
        grpc.insecure_channel(stack["monitor"].address) as channel,
    ):
        monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
        raw = ingest.upload_dataset("customers", customers(1500, seed=1))
        split = ingest.transform_dataset(raw.name, "customers-split", SPLIT_RECIPE)
        created = train.create_training_job(
            "churn-1",
            dataset_version=split.name,
            target="churned",
            task="classification",
            hidden_units=[8],
            dropout=0.0,
            max_epochs=1,
            batch_size=128,
            learning_rate=0.01,
            seed=5,
            register_model="churn",
            code_revision="drift-e2e",
        )
        trained = train.wait_for(created.name, timeout=600)
        version = registry.get_model_version(trained.model_version)
        assert version.lineage.dataset_version == split.name and version.lineage.split == "train"
        assert version.lineage.training_job == created.name

        # Inputs drawn from the training split: no drift, compared with that split.
        training_rows = ingest.read_dataset_frame(split.name, split="train")
        clean = training_rows.sample(400, random_state=3).reset_index(drop=True)
        accepted = monitor.RecordInferences(
            pb.RecordInferencesRequest(records=samples(clean, version.name)), timeout=60
        )
        assert accepted.accepted_count == 50
        report = monitor.GetDriftReport(pb.GetDriftReportRequest(model_version=version.name), timeout=60)
        assert report.reference_dataset_version == split.name and report.reference_split == "train"
        assert report.sample_count == 400
        assert {f.feature for f in report.features} == {"age", "plan", "spend"}
        assert not report.drifted, report

        # Newer data arrives (a second version of the same dataset), and the policy asks for retraining.
        newer_raw = ingest.upload_dataset("customers", customers(1500, seed=2))
        newer = ingest.transform_dataset(newer_raw.name, "customers-split", SPLIT_RECIPE)
        assert newer.name == "datasets/customers-split/versions/2"
        policy = pb.ModelPolicy(name="policies/churn", retrain_on_drift=True)
        stored = monitor.SetModelPolicy(pb.SetModelPolicyRequest(policy=policy), timeout=30)
        assert stored.drift_threshold == 0.2 and stored.retrain_on_drift

        # Shifted live inputs: older customers on the pro plan.
        shift_start = time.time_ns()
        shifted = training_rows.sample(400, random_state=4).reset_index(drop=True)
        shifted["age"] = shifted["age"] + 20
        shifted["plan"] = np.random.default_rng(4).choice(["basic", "plus", "pro"], 400, p=[0.1, 0.1, 0.8])
        monitor.RecordInferences(pb.RecordInferencesRequest(records=samples(shifted, version.name)), timeout=60)
        request = pb.GetDriftReportRequest(model_version=version.name, window=since(shift_start))
        report = monitor.GetDriftReport(request, timeout=120)
        assert report.drifted and {f.feature for f in report.features if f.drifted} == {"age", "plan"}, report

        alerts = [a for a in monitor.ListAlerts(pb.ListAlertsRequest(), timeout=30).alerts]
        assert len(alerts) == 1, alerts
        alert = alerts[0]
        assert alert.kind == pb.ALERT_KIND_DRIFT and alert.model_version == version.name
        assert alert.action_result.endswith(f" started on {newer.name}"), alert.action_result
        job_name = alert.action_result.split(" ")[0]
        assert job_name.startswith("trainingJobs/") and job_name != created.name
        assert "age" in alert.message and "plan" in alert.message

        # The job exists in train, with the spec of the job that produced the version on the newest data.
        job = train.get_training_job(job_name)
        assert job.dataset_version == newer.name
        original = train.get_training_job(created.name)
        for field in (
            "training_split",
            "validation_split",
            "target",
            "features",
            "task",
            "model",
            "hyperparameters",
            "resources",
            "register_model",
            "code_revision",
        ):
            assert getattr(job, field) == getattr(original, field), field
        assert job.state in (
            train_pb2.TrainingJob.STATE_QUEUED,
            train_pb2.TrainingJob.STATE_RUNNING,
            train_pb2.TrainingJob.STATE_SUCCEEDED,
        )

        # The same breach seen again: no second job, no second alert.
        again = monitor.GetDriftReport(request, timeout=120)
        assert again.drifted
        assert len(monitor.ListAlerts(pb.ListAlertsRequest(), timeout=30).alerts) == 1
        assert sorted(j.name for j in train.list_training_jobs()) == sorted([created.name, job_name])

        # Its alert reached watchers too.
        watched = next(iter(monitor.WatchAlerts(pb.WatchAlertsRequest(since_sequence=0), timeout=30)))
        assert watched.name == alert.name and watched.action_result == alert.action_result
        train.cancel_training_job(job_name)  # not needed further: spare the machine
