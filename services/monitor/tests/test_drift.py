"""Drift reports, model policies and drift breaches, through real registry, ingest and monitor processes.

A synthetic dataset (two numeric and two categorical features) is uploaded to ingest and
split; model versions registered in the registry name its ``train`` split in their lineage
(and a training job that train, unreachable here, would repeat). Inferences are recorded
through RecordInferences shaped as serve sends them (values by input name, one per row).
Retraining against a real train process is in ``tests/test_monitor_drift_end_to_end.py``;
the breach rule itself (one retrain per breach, re-arming) is also checked below on the
service with a recording stand-in for train.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_common.errors import NotFound
from ferry_ingest.messages import profile_to_proto
from ferry_monitor import messages
from ferry_monitor.drift import compare_inputs, live_profile
from ferry_monitor.drift_service import DriftService
from ferry_monitor.inferences import InferenceRecord
from ferry_monitor.policies import DriftState, ModelPolicy
from ferry_monitor.service import Window
from ferry_monitor.slos import Alert, AlertKind, BreachAction
from ferry_monitor.store import SqlInferenceStore, SqlPolicyStore, open_database
from ferry_monitor.upstream import Lineage, profile_from_proto
from ferry_profile import Profile, ProfileBuilder
from ferry_sdk import IngestClient, RegistryClient
from ferry_sdk.spawn import ServiceProcess, closed_address, free_port, spawn_and_wait, stop_all

pytestmark = pytest.mark.slow

NS = 1_000_000_000
FEATURES = {"age", "income", "color", "city"}
SPLIT_RECIPE = {
    "steps": [
        {
            "split": {
                "fractions": [{"name": "train", "fraction": 0.8}, {"name": "validation", "fraction": 0.2}],
                "seed": 7,
            }
        }
    ]
}
# Nothing listens on the discard port: train is unreachable in these tests.
UNREACHABLE = closed_address()


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows).round(1),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "color": rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2]),
            "city": rng.choice(["paris", "lyon", "nice", "lille", "nantes"], rows),
            "target": rng.integers(0, 2, rows),
        }
    )


class Stack:
    """Registry and ingest processes with the dataset and model versions the tests use."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "ingest")}
        self.env = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in self.addresses.items()}
        self.env |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json", "FERRY_TRAIN_ADDRESS": UNREACHABLE}
        self.processes: list[ServiceProcess] = []
        self.train_rows = pd.DataFrame()
        self.split_name = ""

    def start(self) -> None:
        for name in ("registry", "ingest"):
            env = {**self.env, "FERRY_STATE_DIR": str(self.root / name)}
            self.processes.append(spawn_and_wait(name, env=env, log_path=self.root / f"{name}.log", timeout=120))
        with IngestClient(self.addresses["ingest"]) as ingest, RegistryClient(self.addresses["registry"]) as registry:
            raw = ingest.upload_dataset("shop", make_frame(3000, seed=1))
            split = ingest.transform_dataset(raw.name, "shop-split", SPLIT_RECIPE)
            self.split_name = split.name
            self.train_rows = ingest.read_dataset_frame(split.name, split="train")
            registry.create_model("churn")
            artifact = self.root / "model.onnx"
            artifact.write_bytes(b"not a real graph: monitor never reads it")
            for _ in range(4):
                registry.upload_model_version(
                    "churn",
                    artifact,
                    format="onnx",
                    lineage={
                        "dataset_version": split.name,
                        "split": "train",
                        "training_job": "trainingJobs/churn-train-1",
                    },
                )
            registry.create_model("bare")
            registry.upload_model_version("bare", artifact, format="onnx")  # no lineage

    def monitor(self, state: pathlib.Path, **env: str) -> ServiceProcess:
        settings = {**self.env, "FERRY_STATE_DIR": str(state), "FERRY_MONITOR_DRIFT_MIN_SAMPLES": "50", **env}
        settings.setdefault("FERRY_MONITOR_DRIFT_EVALUATE_SECONDS", "3600")
        process = spawn_and_wait("monitor", env=settings, log_path=state / "monitor.log", timeout=120)
        self.processes.append(process)
        return process


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = Stack(tmp_path_factory.mktemp("drift-stack"))
    try:
        built.start()
        yield built
    finally:
        stop_all(built.processes)


@pytest.fixture
def monitor(stack: Stack, tmp_path: pathlib.Path) -> Iterator[monitor_pb2_grpc.MonitorServiceStub]:
    process = stack.monitor(tmp_path)
    with grpc.insecure_channel(process.address) as channel:
        yield monitor_pb2_grpc.MonitorServiceStub(channel)
    process.stop(timeout=30)


def records(frame: pd.DataFrame, version: int, batch: int = 10, time_ns: int | None = None) -> list[pb.InferenceRecord]:
    """Rows as serve samples them: one record per request of ``batch`` rows, values by input name."""
    out = []
    features = frame.drop(columns=["target"], errors="ignore")
    for start in range(0, len(features), batch):
        chunk = features.iloc[start : start + batch]
        inputs = struct_pb2.Struct()
        inputs.update({name: chunk[name].tolist() for name in chunk.columns})
        outputs = struct_pb2.Struct()
        outputs.update({"label": ["1"] * len(chunk)})
        record = pb.InferenceRecord(
            request_id=f"v{version}-{start}-{time.time_ns()}",
            deployment="deployments/churn",
            model_version=f"models/churn/versions/{version}",
            route="primary",
            inputs=inputs,
            outputs=outputs,
            latency_ms=1.0,
        )
        if time_ns is not None:
            record.time.FromNanoseconds(time_ns)
        out.append(record)
    return out


def record(stub: monitor_pb2_grpc.MonitorServiceStub, frame: pd.DataFrame, version: int, **kwargs: Any) -> None:
    batch = records(frame, version, **kwargs)
    assert stub.RecordInferences(pb.RecordInferencesRequest(records=batch), timeout=60).accepted_count == len(batch)


def sample(stack: Stack, rows: int, seed: int) -> pd.DataFrame:
    return stack.train_rows.sample(rows, random_state=seed).reset_index(drop=True)


def shifted(stack: Stack, rows: int, seed: int) -> pd.DataFrame:
    """Training rows with ``age`` moved by 1.5 std and ``color`` mostly blue; the rest as trained."""
    frame = sample(stack, rows, seed)
    frame["age"] = frame["age"] + 15
    rng = np.random.default_rng(seed)
    frame["color"] = rng.choice(["red", "green", "blue"], rows, p=[0.1, 0.1, 0.8])
    return frame


def report(stub: monitor_pb2_grpc.MonitorServiceStub, version: int, **kwargs: Any) -> pb.DriftReport:
    request = pb.GetDriftReportRequest(model_version=f"models/churn/versions/{version}", **kwargs)
    result: pb.DriftReport = stub.GetDriftReport(request, timeout=60)
    return result


def by_feature(found: pb.DriftReport) -> dict[str, pb.FeatureDrift]:
    return {f.feature: f for f in found.features}


def field_of(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    return str(detail.field_violations[0].field)


def window(start_ns: int, end_ns: int) -> pb.TimeWindow:
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.FromNanoseconds(start_ns)
    end.FromNanoseconds(end_ns)
    return pb.TimeWindow(start_time=start, end_time=end)


def drift_alerts(stub: monitor_pb2_grpc.MonitorServiceStub) -> list[pb.Alert]:
    alerts = stub.ListAlerts(pb.ListAlertsRequest(page_size=1000), timeout=30).alerts
    return [a for a in alerts if a.kind == pb.ALERT_KIND_DRIFT]


# ----------------------------------------------------------------------------- reports


def test_inputs_like_the_training_data_do_not_drift(stack: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    record(monitor, sample(stack, 600, seed=11), version=1)
    found = report(monitor, 1)
    assert found.model_version == "models/churn/versions/1"
    assert found.reference_dataset_version == stack.split_name and found.reference_split == "train"
    assert found.sample_count == 600
    features = by_feature(found)
    assert set(features) == FEATURES  # the target is never sent, so never compared
    assert {features[n].method for n in ("age", "income")} == {pb.DRIFT_METHOD_PSI}
    assert {features[n].method for n in ("color", "city")} == {pb.DRIFT_METHOD_CHI_SQUARED}
    assert features["age"].threshold == pytest.approx(0.2)
    assert features["color"].threshold == pytest.approx(0.05)
    assert features["color"].p_value == features["color"].statistic
    assert not found.drifted, found
    assert not any(f.drifted for f in found.features), found
    assert features["age"].statistic < 0.1
    for method in (pb.DRIFT_METHOD_KS, pb.DRIFT_METHOD_WASSERSTEIN):
        other = report(monitor, 1, numeric_method=method)
        assert {by_feature(other)[n].method for n in ("age", "income")} == {method}
        assert not other.drifted, other


def test_one_shifted_numeric_and_one_shifted_categorical_feature_are_flagged(
    stack: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    record(monitor, shifted(stack, 600, seed=12), version=2)
    for method in (pb.DRIFT_METHOD_PSI, pb.DRIFT_METHOD_KS, pb.DRIFT_METHOD_WASSERSTEIN):
        found = report(monitor, 2, numeric_method=method)
        assert found.drifted
        assert {f.feature for f in found.features if f.drifted} == {"age", "color"}, found
    features = by_feature(report(monitor, 2))
    assert features["age"].statistic > 0.2 and features["color"].p_value < 1e-6
    # A model without a policy raises no alert, however drifted.
    assert drift_alerts(monitor) == []


def test_the_model_policy_threshold_changes_the_verdict(
    stack: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    frame = sample(stack, 600, seed=13)
    frame["age"] = frame["age"] + 3  # a mild shift: 0.3 std
    record(monitor, frame, version=3)
    psi = by_feature(report(monitor, 3))["age"].statistic
    assert 0 < psi < 0.2
    default = monitor.GetModelPolicy(pb.GetModelPolicyRequest(name="policies/churn"), timeout=30)
    assert default == pb.ModelPolicy(name="policies/churn", drift_threshold=0.2)

    strict = pb.ModelPolicy(name="policies/churn", drift_threshold=psi / 2)
    assert monitor.SetModelPolicy(pb.SetModelPolicyRequest(policy=strict), timeout=30) == strict
    found = report(monitor, 3)
    assert found.drifted and by_feature(found)["age"].drifted
    assert by_feature(found)["age"].threshold == pytest.approx(psi / 2)
    assert by_feature(found)["income"].threshold == pytest.approx(psi / 2)
    assert not by_feature(found)["income"].drifted

    lax = pb.ModelPolicy(name="policies/churn", drift_threshold=psi * 2)
    monitor.SetModelPolicy(pb.SetModelPolicyRequest(policy=lax), timeout=30)
    assert not report(monitor, 3).drifted
    # The strict policy's breach raised one alert (no retraining asked for).
    alerts = drift_alerts(monitor)
    assert [a.model_version for a in alerts] == ["models/churn/versions/3"]
    assert "age psi" in alerts[0].message and alerts[0].action_result == ""


def test_bad_requests_name_the_field(stack: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    now = time.time_ns()
    record(monitor, sample(stack, 20, seed=14), version=4)
    report_cases = [
        (pb.GetDriftReportRequest(model_version="churn"), "model_version", grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.GetDriftReportRequest(model_version="models/churn/versions/latest"),
            "model_version",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.GetDriftReportRequest(model_version="models/churn/versions/4", window=window(now, now - NS)),
            "window.start_time",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.GetDriftReportRequest(
                model_version="models/churn/versions/4", numeric_method=pb.DRIFT_METHOD_CHI_SQUARED
            ),
            "numeric_method",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.GetDriftReportRequest(model_version="models/churn/versions/4", numeric_method=42),  # type: ignore[arg-type]
            "numeric_method",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.GetDriftReportRequest(model_version="models/churn/versions/99"),
            "model_version",
            grpc.StatusCode.NOT_FOUND,
        ),
        (pb.GetDriftReportRequest(model_version="models/nope/versions/1"), "model_version", grpc.StatusCode.NOT_FOUND),
        # Known version, nothing recorded in the window: a clear precondition, not an empty report.
        (
            pb.GetDriftReportRequest(
                model_version="models/churn/versions/4", window=window(now - 7200 * NS, now - 3600 * NS)
            ),
            "model_version",
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (
            pb.GetDriftReportRequest(model_version="models/churn/versions/1"),
            "model_version",
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ]
    for request, field, code in report_cases:
        with pytest.raises(grpc.RpcError) as raised:
            monitor.GetDriftReport(request, timeout=30)
        assert raised.value.code() is code, (request, raised.value.details())
        assert field_of(raised.value) == field, raised.value.details()
        assert field in (raised.value.details() or "")
    # A version with records but no lineage to compare with.
    inputs = struct_pb2.Struct()
    inputs.update({"age": [1.0]})
    monitor.RecordInferences(
        pb.RecordInferencesRequest(
            records=[
                pb.InferenceRecord(
                    request_id="bare-1",
                    deployment="deployments/bare",
                    model_version="models/bare/versions/1",
                    route="primary",
                    inputs=inputs,
                )
            ]
        ),
        timeout=30,
    )
    with pytest.raises(grpc.RpcError) as raised:
        monitor.GetDriftReport(pb.GetDriftReportRequest(model_version="models/bare/versions/1"), timeout=30)
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "lineage" in (raised.value.details() or "")

    policy_cases = [
        (pb.SetModelPolicyRequest(), "policy", grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.SetModelPolicyRequest(policy=pb.ModelPolicy(name="models/churn")),
            "policy.name",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.SetModelPolicyRequest(policy=pb.ModelPolicy(name="policies/churn", drift_threshold=-1)),
            "policy.drift_threshold",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.SetModelPolicyRequest(policy=pb.ModelPolicy(name="policies/churn", drift_threshold=float("nan"))),
            "policy.drift_threshold",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.SetModelPolicyRequest(policy=pb.ModelPolicy(name="policies/churn", min_accuracy=1.5)),
            "policy.min_accuracy",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.SetModelPolicyRequest(policy=pb.ModelPolicy(name="policies/nope")),
            "policy.name",
            grpc.StatusCode.NOT_FOUND,
        ),
    ]
    for set_request, field, code in policy_cases:
        with pytest.raises(grpc.RpcError) as raised:
            monitor.SetModelPolicy(set_request, timeout=30)
        assert raised.value.code() is code, (set_request, raised.value.details())
        assert field_of(raised.value) == field, raised.value.details()
    for name, field, code in [
        ("churn", "name", grpc.StatusCode.INVALID_ARGUMENT),
        ("policies/Churn", "name", grpc.StatusCode.INVALID_ARGUMENT),
        ("policies/nope", "name", grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            monitor.GetModelPolicy(pb.GetModelPolicyRequest(name=name), timeout=30)
        assert raised.value.code() is code, (name, raised.value.details())
        assert field_of(raised.value) == field
    # Nothing was stored by the refused calls.
    assert monitor.GetModelPolicy(pb.GetModelPolicyRequest(name="policies/churn"), timeout=30).drift_threshold == 0.2


# ----------------------------------------------------------------------------- breaches and restarts


def wait_for_alerts(stub: monitor_pb2_grpc.MonitorServiceStub, count: int, timeout: float = 60) -> list[pb.Alert]:
    deadline = time.monotonic() + timeout
    while True:
        found = drift_alerts(stub)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_policy_and_breach_survive_a_restart_and_the_evaluator_alerts_once(
    stack: Stack, tmp_path: pathlib.Path
) -> None:
    process = stack.monitor(tmp_path, FERRY_MONITOR_DRIFT_EVALUATE_SECONDS="1")
    policy = pb.ModelPolicy(name="policies/churn", drift_threshold=0.25, retrain_on_drift=True, min_accuracy=0.8)
    with grpc.insecure_channel(process.address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        record(stub, sample(stack, 300, seed=15), version=1)
        record(stub, shifted(stack, 300, seed=16), version=2)
        assert stub.SetModelPolicy(pb.SetModelPolicyRequest(policy=policy), timeout=30) == policy
        # The periodic evaluation finds version 2's drift by itself (no GetDriftReport asked).
        alerts = wait_for_alerts(stub, 1)
        assert [a.model_version for a in alerts] == ["models/churn/versions/2"], alerts
        assert alerts[0].action_result.startswith("error: ") and "UNAVAILABLE" in alerts[0].action_result
        assert "age" in alerts[0].message and "color" in alerts[0].message
        time.sleep(3)  # a few more evaluations (each retries the job that could not start)
        assert report(stub, 2).drifted
        assert len(drift_alerts(stub)) == 1
    assert process.stop(timeout=30) == 0

    again = stack.monitor(tmp_path, FERRY_MONITOR_DRIFT_EVALUATE_SECONDS="1")
    with grpc.insecure_channel(again.address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        assert stub.GetModelPolicy(pb.GetModelPolicyRequest(name="policies/churn"), timeout=30) == policy
        time.sleep(3)
        assert report(stub, 2).drifted
        assert len(drift_alerts(stub)) == 1  # the breach was remembered, not raised again
    assert again.stop(timeout=30) == 0


# ----------------------------------------------------------------------------- the breach rule


class RecordingUpstream:
    """Registry, ingest and train as a test stands them in: lineage fixed, retrains recorded."""

    def __init__(self, reference: Any) -> None:
        self.reference = reference
        self.retrains: list[tuple[str, str]] = []
        self.fail = False

    async def lineage(self, model: str, version: int, field: str) -> Lineage:
        if model != "churn":
            raise NotFound(f"{field}: unknown", field=field)
        return Lineage("datasets/shop-split/versions/1", "train", "trainingJobs/churn-train-1")

    async def check_model(self, model: str, field: str) -> None:
        if model != "churn":
            raise NotFound(f"{field}: unknown", field=field)

    async def reference_profile(self, dataset_version: str, split: str, field: str) -> Any:
        return self.reference

    async def retrain(self, training_job: str, request_id: str) -> tuple[str, str]:
        if self.fail:
            raise RuntimeError("CreateTrainingJob: UNAVAILABLE: train is down")
        self.retrains.append((training_job, request_id))
        return f"trainingJobs/retrain-{len(self.retrains)}", "datasets/shop-split/versions/2"


def test_one_retrain_per_breach_and_a_clean_window_rearms(stack: Stack, tmp_path: pathlib.Path) -> None:
    with IngestClient(stack.addresses["ingest"]) as ingest:
        reference = profile_from_proto(ingest.get_profile(stack.split_name, split="train"))
    clock = [time.time_ns()]

    def records_at(frame: pd.DataFrame) -> list[InferenceRecord]:
        # A second before the (exclusive) end of the evaluated window.
        return messages.parse_records(records(frame, 1, time_ns=clock[0] - NS), clock[0])

    async def scenario() -> None:
        database = open_database(f"sqlite:///{tmp_path / 'monitor.db'}", threads=2)
        upstream = RecordingUpstream(reference)
        alerted: list[int] = []
        inferences = SqlInferenceStore(database)
        drift = DriftService(
            SqlPolicyStore(database),
            inferences,
            database.runner,
            upstream,
            on_alert=lambda: alerted.append(1),
            window_seconds=600,
            min_samples=50,
            clock=lambda: clock[0],
        )
        try:
            await drift.set_policy(ModelPolicy("churn", retrain_on_drift=True))
            await database.runner.write(inferences.add_records, records_at(shifted(stack, 300, seed=21)))
            first = await drift.evaluate()
            assert len(first) == 1 and first[0].action_result == (
                "trainingJobs/retrain-1 started on datasets/shop-split/versions/2"
            )
            assert upstream.retrains == [("trainingJobs/churn-train-1", "ferry-monitor-drift-churn-1-1")]
            # Seen again, by the evaluator and by a report: no new job, no new alert.
            assert await drift.evaluate() == []
            assert (await drift.report("churn", 1, Window())).drifted
            assert len(upstream.retrains) == 1 and len(alerted) == 1

            # Later, clean inputs only in the window: the breach ends (re-armed).
            clock[0] += 1200 * NS
            await database.runner.write(inferences.add_records, records_at(sample(stack, 300, seed=22)))
            assert await drift.evaluate() == []
            # Drift again: a second breach, a second job (a new request id).
            clock[0] += 1200 * NS
            upstream.fail = True
            await database.runner.write(inferences.add_records, records_at(shifted(stack, 300, seed=23)))
            failed = await drift.evaluate()
            assert len(failed) == 1 and failed[0].action_result.startswith("error: CreateTrainingJob: UNAVAILABLE")
            # Train back: the job of that same breach starts once, with a second alert naming it.
            upstream.fail = False
            started = await drift.evaluate()
            assert len(started) == 1 and "trainingJobs/retrain-2" in started[0].action_result
            assert upstream.retrains[-1] == ("trainingJobs/churn-train-1", "ferry-monitor-drift-churn-1-2")
            assert await drift.evaluate() == []
            assert len(upstream.retrains) == 2
        finally:
            database.close()

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- the store


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_policies_and_breaches_on_sqlite_and_postgresql(
    backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    database = open_database(url, threads=2)
    try:
        store = SqlPolicyStore(database)
        assert store.get_policy("churn") is None and store.list_policies() == []
        store.put_policy(ModelPolicy("churn", drift_threshold=0.3, retrain_on_drift=True, min_accuracy=0.9))
        store.put_policy(ModelPolicy("churn", drift_threshold=0.4))  # replaces
        store.put_policy(ModelPolicy("acme"))
        assert store.get_policy("churn") == ModelPolicy("churn", drift_threshold=0.4)
        assert [p.model for p in store.list_policies()] == ["acme", "churn"]

        assert store.get_state("churn", 3) == DriftState("churn", 3)
        alert = Alert(0, AlertKind.DRIFT, "", "models/churn/versions/3", "", "drift", BreachAction.ALERT, "", 1)
        first = store.record_breach(DriftState("churn", 3, True, 1, "trainingJobs/a"), alert)
        second = store.record_breach(DriftState("churn", 3, True, 1, "trainingJobs/b"), alert)
        assert (first.sequence, second.sequence) == (1, 2)
        assert store.get_state("churn", 3) == DriftState("churn", 3, True, 1, "trainingJobs/b")
        store.put_state(DriftState("churn", 3, False, 1, ""))
        assert store.get_state("churn", 3) == DriftState("churn", 3, False, 1, "")
        assert store.get_state("churn", 4) == DriftState("churn", 4)
    finally:
        database.close()


# ----------------------------------------------------------------------------- profiles


def _profile(table: pa.Table) -> Profile:
    builder = ProfileBuilder(table.schema)
    builder.add(table)
    return builder.result()


def test_live_profile_reads_inputs_as_serve_sends_them() -> None:
    reference = _profile(
        pa.table({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"], "flag": [True, False, True], "target": [0, 1, 0]})
    )
    records = [
        json.dumps({"x": [1.5, None, 2.5], "c": ["a", "", "b"], "flag": [True, False, True]}),  # a batch of 3
        json.dumps({"x": 4, "c": "b"}),  # scalars: one row; flag not sent
        json.dumps({"x": ["7", "oops"], "c": [1.0, True], "extra": [1, 2]}),  # text numbers, odd values
    ]
    profile = live_profile(records, reference)
    assert profile.row_count == 6
    assert [c.name for c in profile.columns] == ["x", "c", "flag"]  # the reference's features, as sent
    x, c, flag = profile.columns
    assert x.null_count == 2 and x.numeric is not None and (x.numeric.min, x.numeric.max) == (1.5, 7.0)
    assert c.null_count == 1 and c.categorical is not None  # "" is a null string
    assert dict(c.categorical.top_values) == {"a": 1, "b": 2, "1": 1, "true": 1}
    assert flag.null_count == 3 and flag.categorical is not None
    assert dict(flag.categorical.top_values) == {"true": 2, "false": 1}


def test_the_wire_profile_reference_measures_like_the_full_profile() -> None:
    # ingest's GetProfile keeps quantiles and a 20-bin histogram only: on a skewed column the
    # rebuilt reference must give the PSI/KS/Wasserstein the full profile (with its sketches) gives.
    rng = np.random.default_rng(3)
    table = pa.table({"income": rng.lognormal(10, 0.8, 5000).round(2), "age": rng.normal(40, 10, 5000).round(1)})
    full = _profile(table)
    wire = profile_from_proto(profile_to_proto("datasets/d/versions/1", "train", full))
    picked = rng.choice(5000, 800, replace=False)
    records = [
        json.dumps({"income": table["income"][int(i)].as_py(), "age": table["age"][int(i)].as_py()}) for i in picked
    ]
    for statistic, tolerance in (("psi", 0.01), ("ks", 0.02), ("wasserstein", 0.02)):
        measured = {}
        for name, reference in (("full", full), ("wire", wire)):
            result = compare_inputs(
                records,
                reference,
                model="m",
                version=1,
                reference_dataset_version="datasets/d/versions/1",
                reference_split="train",
                numeric=statistic,  # type: ignore[arg-type]
                psi_threshold=0.2,
            )
            measured[name] = {f.feature: f.value for f in result.features}
        for feature in ("income", "age"):
            assert measured["wire"][feature] == pytest.approx(measured["full"][feature], abs=tolerance), (
                statistic,
                feature,
                measured,
            )
