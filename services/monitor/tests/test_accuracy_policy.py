"""ModelPolicy.min_accuracy: the periodic evaluation alerts once per accuracy breach and re-arms.

The end-to-end test runs a real registry (a policy needs its model to exist there) and a
real monitor process: inferences are recorded as serve samples them and ground truth comes
through RecordFeedback, with nothing else running (the versions have no lineage, so drift
is not judged for them). The breach rule's finer points (the label floor, regression
versions, re-arming) are also checked on the service with a stand-in for the registry, and
the accuracy state on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry.monitor.v1 import monitor_pb2_grpc
from ferry_common.errors import NotFound
from ferry_monitor.drift_service import DriftService
from ferry_monitor.inferences import Feedback, InferenceRecord
from ferry_monitor.policies import AccuracyState, DriftState, ModelPolicy
from ferry_monitor.slos import Alert, AlertKind, BreachAction
from ferry_monitor.store import SqlInferenceStore, SqlPolicyStore, open_database
from ferry_monitor.upstream import Lineage
from ferry_sdk import RegistryClient
from ferry_sdk.spawn import ServiceProcess, closed_address, free_port, spawn_and_wait, stop_all

NS = 1_000_000_000
# Nothing listens on the discard port: ingest and train are unreachable (and never needed).
UNREACHABLE = closed_address()


class Registry:
    """A registry process with model ``acc``: version 1 a classifier, version 2 a regressor."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.address = f"127.0.0.1:{free_port()}"
        self.env = {
            "FERRY_REGISTRY_ADDRESS": self.address,
            "FERRY_INGEST_ADDRESS": UNREACHABLE,
            "FERRY_TRAIN_ADDRESS": UNREACHABLE,
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_LOG_FORMAT": "json",
        }
        self.processes: list[ServiceProcess] = []

    def start(self) -> None:
        env = {**self.env, "FERRY_STATE_DIR": str(self.root / "registry")}
        self.processes.append(spawn_and_wait("registry", env=env, log_path=self.root / "registry.log", timeout=120))
        artifact = self.root / "model.onnx"
        artifact.write_bytes(b"not a real graph: monitor never reads it")
        with RegistryClient(self.address) as registry:
            registry.create_model("acc")
            for _ in range(2):
                registry.upload_model_version("acc", artifact, format="onnx")  # no lineage: no drift judged

    def monitor(self, state: pathlib.Path) -> ServiceProcess:
        settings = {
            **self.env,
            "FERRY_STATE_DIR": str(state),
            "FERRY_MONITOR_DRIFT_EVALUATE_SECONDS": "1",
            "FERRY_MONITOR_ACCURACY_MIN_LABELS": "10",
        }
        process = spawn_and_wait("monitor", env=settings, log_path=state / "monitor.log", timeout=120)
        self.processes.append(process)
        return process


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    built = Registry(tmp_path_factory.mktemp("accuracy-stack"))
    try:
        built.start()
        yield built
    finally:
        stop_all(built.processes)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    found = struct_pb2.Struct()
    found.update(values)
    return found


def record(stub: monitor_pb2_grpc.MonitorServiceStub, version: int, outputs: dict[str, Any], ids: list[str]) -> None:
    """One one-row record per request id, shaped as serve samples them."""
    batch = [
        pb.InferenceRecord(
            request_id=rid,
            deployment="deployments/acc",
            model_version=f"models/acc/versions/{version}",
            route="primary",
            inputs=struct({"x": [1.0]}),
            outputs=struct(outputs),
            latency_ms=1.0,
        )
        for rid in ids
    ]
    assert stub.RecordInferences(pb.RecordInferencesRequest(records=batch), timeout=60).accepted_count == len(batch)


def feedback(stub: monitor_pb2_grpc.MonitorServiceStub, truths: dict[str, Any]) -> None:
    items = []
    for rid, value in truths.items():
        truth = struct_pb2.Value()
        if isinstance(value, str):
            truth.string_value = value
        else:
            truth.number_value = value
        items.append(pb.Feedback(request_id=rid, ground_truth=truth))
    response = stub.RecordFeedback(pb.RecordFeedbackRequest(feedback=items), timeout=60)
    assert response.accepted_count == len(items) and not response.unknown_request_ids


def performance_alerts(stub: monitor_pb2_grpc.MonitorServiceStub) -> list[pb.Alert]:
    alerts = stub.ListAlerts(pb.ListAlertsRequest(page_size=1000), timeout=30).alerts
    return [a for a in alerts if a.kind == pb.ALERT_KIND_PERFORMANCE]


def wait_for_alerts(stub: monitor_pb2_grpc.MonitorServiceStub, count: int, timeout: float = 60) -> list[pb.Alert]:
    deadline = time.monotonic() + timeout
    while True:
        found = performance_alerts(stub)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def wait_for_log(path: pathlib.Path, event: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while event not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{event!r} never logged in {path}"
        time.sleep(0.5)


@pytest.mark.slow
def test_accuracy_below_the_minimum_alerts_once_survives_a_restart_and_rearms(
    registry: Registry, tmp_path: pathlib.Path
) -> None:
    process = registry.monitor(tmp_path)
    policy = pb.ModelPolicy(name="policies/acc", min_accuracy=0.8)
    wrong = [f"wrong-{i}" for i in range(10)]
    right = [f"right-{i}" for i in range(10)]
    with grpc.insecure_channel(process.address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        assert stub.SetModelPolicy(pb.SetModelPolicyRequest(policy=policy), timeout=30).min_accuracy == 0.8
        # Fewer labelled rows than FERRY_MONITOR_ACCURACY_MIN_LABELS (10): accuracy 0 judges nothing.
        record(stub, 1, {"label": ["1"]}, wrong[:8])
        feedback(stub, dict.fromkeys(wrong[:8], "0"))
        # A regressor far off the truth: min_accuracy does not apply to MAE/RMSE.
        regression = [f"reg-{i}" for i in range(20)]
        record(stub, 2, {"prediction": [10.0]}, regression)
        feedback(stub, dict.fromkeys(regression, 0.0))
        time.sleep(4)  # several evaluations
        assert performance_alerts(stub) == []

        # 20 labelled rows, 10 right: accuracy 0.5 < 0.8.
        record(stub, 1, {"label": ["1"]}, wrong[8:] + right)
        feedback(stub, dict.fromkeys(wrong[8:], "0") | dict.fromkeys(right, "1"))
        report = stub.GetPerformance(pb.GetPerformanceRequest(model_version="models/acc/versions/1"), timeout=30)
        assert (report.labeled_count, report.accuracy) == (20, 0.5)
        alerts = wait_for_alerts(stub, 1)
        assert len(alerts) == 1, alerts
        alert = alerts[0]
        assert alert.model_version == "models/acc/versions/1"
        assert alert.action == pb.BREACH_ACTION_ALERT and alert.action_result == ""
        assert not alert.slo and not alert.deployment
        assert "models/acc/versions/1" in alert.message
        assert "accuracy 0.5 " in alert.message and "min_accuracy 0.8 " in alert.message, alert.message
        assert "(10 of 20 labelled rows right)" in alert.message, alert.message
        time.sleep(4)  # later evaluations still see 0.5: no new alert
        assert performance_alerts(stub) == alerts
    assert process.stop(timeout=30) == 0

    again = registry.monitor(tmp_path)
    with grpc.insecure_channel(again.address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        assert stub.GetModelPolicy(pb.GetModelPolicyRequest(name="policies/acc"), timeout=30).min_accuracy == 0.8
        time.sleep(4)
        assert performance_alerts(stub) == alerts  # the breach was remembered, not raised again

        # Corrected truth: accuracy 1.0, the breach ends (re-armed) ...
        feedback(stub, dict.fromkeys(wrong, "1"))
        wait_for_log(tmp_path / "monitor.log", "accuracy breach ended")
        assert performance_alerts(stub) == alerts
        # ... so a new fall below the minimum is a second breach and a second alert.
        feedback(stub, dict.fromkeys(wrong, "0"))
        second = wait_for_alerts(stub, 2)
        assert len(second) == 2 and second[0] == alerts[0], second
        assert second[1].model_version == "models/acc/versions/1" and second[1].sequence > alerts[0].sequence
        assert "accuracy 0.5 " in second[1].message
        time.sleep(3)
        assert len(performance_alerts(stub)) == 2
    assert again.stop(timeout=30) == 0


# ----------------------------------------------------------------------------- the breach rule


class NoLineage:
    """The registry as the evaluation sees it: model ``acc`` exists, its versions name no dataset."""

    async def lineage(self, model: str, version: int, field: str) -> Lineage:
        if model != "acc":
            raise NotFound(f"{field}: unknown", field=field)
        return Lineage("", "", "")

    async def check_model(self, model: str, field: str) -> None:
        if model != "acc":
            raise NotFound(f"{field}: unknown", field=field)

    async def reference_profile(self, dataset_version: str, split: str, field: str) -> Any:
        raise AssertionError("drift is not judged without a lineage dataset")

    async def retrain(self, training_job: str, request_id: str) -> tuple[str, str]:
        raise AssertionError("an accuracy breach starts no training job")


def test_the_breach_rule_on_the_service(tmp_path: pathlib.Path) -> None:
    clock = [time.time_ns()]
    counter = [0]

    def labelled(
        version: int, outputs: dict[str, Any], truths: list[Any]
    ) -> tuple[list[InferenceRecord], list[Feedback]]:
        records, items = [], []
        for truth in truths:
            counter[0] += 1
            rid = f"r{counter[0]}"
            records.append(
                InferenceRecord(
                    rid, "deployments/acc", "acc", version, "primary", clock[0] - NS, 1.0, "{}", json.dumps(outputs)
                )
            )
            items.append(Feedback(rid, json.dumps(truth)))
        return records, items

    async def scenario() -> None:
        database = open_database(f"sqlite:///{tmp_path / 'monitor.db'}", threads=2)
        inferences = SqlInferenceStore(database)
        policies = SqlPolicyStore(database)
        alerted: list[int] = []
        drift = DriftService(
            policies,
            inferences,
            database.runner,
            NoLineage(),
            on_alert=lambda: alerted.append(1),
            window_seconds=600,
            min_labels=10,
            clock=lambda: clock[0],
        )

        async def add(version: int, outputs: dict[str, Any], truths: list[Any]) -> None:
            records, items = labelled(version, outputs, truths)
            await database.runner.write(inferences.add_records, records)
            assert await database.runner.write(inferences.add_feedback, items) == []

        try:
            # min_accuracy 0: not checked, however bad.
            await drift.set_policy(ModelPolicy("acc"))
            await add(1, {"label": "a"}, ["b"] * 10)
            assert await drift.evaluate() == []
            assert await database.runner.read(policies.get_accuracy_state, "acc", 1) == AccuracyState("acc", 1)

            await drift.set_policy(ModelPolicy("acc", min_accuracy=0.75, retrain_on_drift=True))
            # A batch record of four rows, three right, and the ten wrong ones: 3 / 14 < 0.75.
            await add(1, {"label": ["a", "a", "b", "b"]}, [["a", "a", "b", "a"]])
            # A regressor's rows never count as labels, and never raise anything.
            await add(2, {"prediction": 1.0}, [5.0] * 30)
            first = await drift.evaluate()
            assert [(a.kind, a.model_version, a.action, a.action_result) for a in first] == [
                (AlertKind.PERFORMANCE, "models/acc/versions/1", BreachAction.ALERT, "")
            ]
            assert "accuracy 0.2143 " in first[0].message and "(3 of 14 labelled rows right)" in first[0].message, (
                first[0].message
            )
            assert await database.runner.read(policies.get_accuracy_state, "acc", 1) == AccuracyState("acc", 1, True, 1)
            assert await database.runner.read(policies.get_accuracy_state, "acc", 2) == AccuracyState("acc", 2)
            assert await drift.evaluate() == [] and len(alerted) == 1
            # Drift breach state untouched by accuracy.
            assert await database.runner.read(policies.get_state, "acc", 1) == DriftState("acc", 1)

            # Later, too few labels in the window: nothing judged, the breach goes on.
            clock[0] += 1200 * NS
            await add(1, {"label": "a"}, ["a"] * 9)
            assert await drift.evaluate() == []
            assert (await database.runner.read(policies.get_accuracy_state, "acc", 1)).breached
            # Enough labels at or above the minimum (10 / 12 >= 0.75): re-armed, no alert.
            await add(1, {"label": "a"}, ["a", "b", "b"])
            assert await drift.evaluate() == []
            assert await database.runner.read(policies.get_accuracy_state, "acc", 1) == AccuracyState(
                "acc", 1, False, 1
            )
            # Below again (10 / 16): a second breach and a second alert.
            await add(1, {"label": "a"}, ["b"] * 4)
            second = await drift.evaluate()
            assert len(second) == 1 and second[0].sequence == first[0].sequence + 1
            assert await database.runner.read(policies.get_accuracy_state, "acc", 1) == AccuracyState("acc", 1, True, 2)
            assert len(alerted) == 2
            # The floor set to 0: not checked, the breach ends; set again, the same accuracy alerts.
            await drift.set_policy(ModelPolicy("acc"))
            assert await drift.evaluate() == []
            assert await database.runner.read(policies.get_accuracy_state, "acc", 1) == AccuracyState(
                "acc", 1, False, 2
            )
            await drift.set_policy(ModelPolicy("acc", min_accuracy=0.75))
            assert len(await drift.evaluate()) == 1 and len(alerted) == 3
        finally:
            database.close()

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- the store


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_accuracy_states_on_sqlite_and_postgresql(
    backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    database = open_database(url, threads=2)
    try:
        store = SqlPolicyStore(database)
        assert store.get_accuracy_state("acc", 1) == AccuracyState("acc", 1)
        alert = Alert(0, AlertKind.PERFORMANCE, "", "models/acc/versions/1", "", "low", BreachAction.ALERT, "", 1)
        first = store.record_accuracy_breach(AccuracyState("acc", 1, True, 1), alert)
        assert first.sequence == 1 and first.kind == AlertKind.PERFORMANCE
        assert store.get_accuracy_state("acc", 1) == AccuracyState("acc", 1, True, 1)
        store.put_accuracy_state(AccuracyState("acc", 1, False, 1))
        assert store.get_accuracy_state("acc", 1) == AccuracyState("acc", 1, False, 1)
        assert store.get_accuracy_state("acc", 2) == AccuracyState("acc", 2)
        # The drift state of the same version is a separate row.
        assert store.get_state("acc", 1) == DriftState("acc", 1)
        second = store.record_breach(DriftState("acc", 1, True, 1, ""), alert)
        assert second.sequence == 2
        assert store.get_accuracy_state("acc", 1) == AccuracyState("acc", 1, False, 1)
    finally:
        database.close()
