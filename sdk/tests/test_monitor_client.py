"""``MonitorClient``, blocking and asyncio, against a real ``ferry-monitor`` process (and, for drift,
real registry and ingest processes; ``ferry monitor drift`` is checked on the same report).

Spans reach monitor the way every service sends them: the OpenTelemetry SDK's own
``OTLPSpanExporter`` (:mod:`ferry_monitor.testing`). SLOs are judged every second
(``FERRY_MONITOR_SLO_EVALUATE_SECONDS=1``); nothing listens where monitor looks for serve,
so the alerts here only alert.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import pathlib
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from typer.testing import CliRunner

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry_monitor.testing import emit_spans, exporting_provider
from ferry_sdk import (
    AlertWatch,
    Backoff,
    IngestClient,
    MonitorClient,
    RegistryClient,
    ServiceProcess,
    aio,
    errors,
    free_port,
    spawn_and_wait,
)
from ferry_sdk._monitor_messages import feedback_messages, model_version_name, slo_message, span_filter, time_window
from ferry_sdk.cli import app
from ferry_sdk.spawn import closed_address, stop_all

MS = 1_000_000
CANARY = {"ferry.deployment": "churn", "ferry.model": "churn", "ferry.version": 2, "ferry.route": "canary"}
PRIMARY = {**CANARY, "ferry.version": 1, "ferry.route": "primary"}
METHOD = "/inference.GRPCInferenceService/ModelInfer"


def start_monitor(state: pathlib.Path, address: str | None = None) -> ServiceProcess:
    env = {
        "FERRY_STATE_DIR": str(state),
        "OTEL_TRACES_EXPORTER": "none",
        "FERRY_LOG_LEVEL": "warning",
        "FERRY_MONITOR_SLO_EVALUATE_SECONDS": "1",
        "FERRY_SERVE_ADDRESS": closed_address(),  # nothing there: the SLOs here only alert
    }
    return spawn_and_wait("monitor", env=env, address=address, cwd=state, log_path=state / "monitor.log")


@pytest.fixture
def monitor(tmp_path: pathlib.Path) -> Iterator[ServiceProcess]:
    process = start_monitor(tmp_path)
    try:
        yield process
    finally:
        process.stop(timeout=15)


def send_spans(address: str) -> str:
    """30 canary spans of 120 ms, 30 primary spans of 5 ms (2 errors), and one trace of two spans; its id."""
    provider = exporting_provider(address, "ferry-serve")
    emit_spans(provider, [120 * MS] * 30, name=METHOD, attributes=CANARY)
    emit_spans(provider, [5 * MS] * 30, name=METHOD, attributes=PRIMARY, errors=[i < 2 for i in range(30)])
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent") as parent, tracer.start_as_current_span("child"):
        trace_id = format(parent.get_span_context().trace_id, "032x")
    assert provider.force_flush(30_000)
    provider.shutdown()
    return trace_id


def inference(
    request_id: str, version: int, route: str, label: str, inputs: dict[str, list[object]] | None = None
) -> pb.InferenceRecord:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    values, outputs = struct_pb2.Struct(), struct_pb2.Struct()
    values.update(inputs or {"x": [0.5]})
    outputs.update({"label": [label]})
    return pb.InferenceRecord(
        request_id=request_id,
        deployment="deployments/churn",
        model_version=f"models/churn/versions/{version}",
        route=route,
        time=stamp,
        inputs=values,
        outputs=outputs,
        latency_ms=2.0,
    )


def wait_for(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_latency_traces_feedback_and_errors_blocking(monitor: ServiceProcess) -> None:
    trace_id = send_spans(monitor.address)
    with MonitorClient(monitor.address, timeout=15) as client:
        canary = client.get_latency_summary(deployment="churn", route="canary", last=datetime.timedelta(minutes=5))
        assert canary.count == 30 and canary.error_count == 0
        assert canary.p99_ms == pytest.approx(120, rel=0.02) and canary.max_ms == pytest.approx(120)
        # Resource names work where ids are expected; a message filter is the same query.
        everything = client.get_latency_summary(deployment="deployments/churn", model="models/churn")
        assert (everything.count, everything.error_count) == (60, 2)
        assert client.get_latency_summary(pb.SpanFilter(deployment="churn", version=1)).count == 30
        assert client.get_latency_summary(service="ferry-serve", method=METHOD).count == 60
        # A window that ended before the spans holds none of them.
        long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        assert client.get_latency_summary(deployment="churn", end=long_ago).count == 0

        points = client.list_latency_series(deployment="churn", last=datetime.timedelta(minutes=2), step=10)
        assert sum(p.summary.count for p in points) == 60
        assert all(b.start_time.ToDatetime() > a.start_time.ToDatetime() for a, b in itertools.pairwise(points))

        trace = client.get_trace(trace_id)
        assert trace.trace_id == trace_id and [s.name for s in trace.spans] == ["parent", "child"]
        assert trace.spans[1].parent_span_id == trace.spans[0].span_id

        assert client.record_inferences([inference(f"r{i}", 2, "canary", "yes") for i in range(4)]) == 4
        answer = client.record_feedback({"r0": "yes", "r1": "yes", "r2": "no", "r3": "yes", "ghost": "no"})
        assert answer.accepted_count == 4 and list(answer.unknown_request_ids) == ["ghost"]
        report = client.get_performance("churn", version=2, route="canary")
        assert report.model_version == "models/churn/versions/2"
        assert (report.labeled_count, report.accuracy) == (4, pytest.approx(0.75))
        assert client.get_performance("models/churn/versions/2", route="primary").labeled_count == 0

        # The server's errors come back typed, naming the field.
        with pytest.raises(errors.InvalidArgument) as caught:
            client.get_trace("not-hex")
        assert caught.value.field == "trace_id"
        with pytest.raises(errors.InvalidArgument) as caught:
            client.set_slo("p99", deployment="churn", percentile=150, latency_threshold_ms=50)
        assert caught.value.field == "slo.percentile"
        with pytest.raises(errors.InvalidArgument) as caught:
            client.get_latency_summary(deployment="Not An Id")
        assert caught.value.field == "filter.deployment"
        # What the client can tell on its own never reaches the wire.
        with pytest.raises(ValueError, match="version"):
            client.get_performance("churn")
        with pytest.raises(ValueError, match="action"):
            client.set_slo("p99", deployment="churn", latency_threshold_ms=50, action="panic")
        with pytest.raises(ValueError, match="not both"):
            client.get_latency_summary(pb.SpanFilter(), deployment="churn")


@pytest.mark.slow
def test_slos_page_and_alerts_are_watched_across_a_restart(tmp_path: pathlib.Path) -> None:
    monitor = start_monitor(tmp_path)
    try:
        with MonitorClient(monitor.address, timeout=15) as client:
            stored = client.set_slo(
                "canary-p99",
                deployment="churn",
                route="canary",
                percentile=99,
                latency_threshold_ms=50,
                window=datetime.timedelta(minutes=1),
                min_count=10,
                action="alert",
            )
            assert stored.name == "slos/canary-p99" and not stored.breached
            assert stored.filter.route == "canary" and stored.window.seconds == 60
            assert stored.action == pb.BREACH_ACTION_ALERT
            client.set_slo("slos/primary-errors", deployment="churn", route="primary", max_error_rate=0.5, window=60)
            slos = list(client.list_slos(page_size=1))  # two pages
            assert [s.name for s in slos] == ["slos/canary-p99", "slos/primary-errors"]

            send_spans(monitor.address)
            watch = client.watch_alerts(backoff=Backoff(initial=0.1, maximum=0.5, give_up_after=60))
            first = next(watch)
            assert first.sequence == 1 and first.slo == "slos/canary-p99"
            assert first.deployment == "deployments/churn" and first.kind == pb.ALERT_KIND_SLO_BREACH
            assert watch.sequence == 1
            assert [a.sequence for a in client.list_alerts()] == [1]
            wait_for(lambda: next(iter(client.list_slos())).breached, "the breach flag")

            # Monitor is killed; the watch reconnects to the new process and resumes after 1.
            monitor.kill()
            monitor = start_monitor(tmp_path, address=monitor.address)
            client.set_slo(
                "canary-p50", deployment="churn", route="canary", percentile=50, latency_threshold_ms=10, min_count=10
            )
            send_spans(monitor.address)
            second = next(watch)
            assert second.sequence == 2 and second.slo == "slos/canary-p50"
            watch.cancel()
            assert [a.sequence for a in client.list_alerts(page_size=1)] == [1, 2]
            # A fresh watch from a sequence replays only what follows it.
            with client.watch_alerts(since_sequence=1) as again:
                assert isinstance(again, AlertWatch)
                assert next(again).sequence == 2
    finally:
        monitor.stop(timeout=15)


@pytest.mark.slow
def test_asyncio_client(monitor: ServiceProcess) -> None:
    send_spans(monitor.address)

    async def scenario() -> None:
        async with aio.MonitorClient(monitor.address, timeout=15) as client:
            summary = await client.get_latency_summary(deployment="churn", route="canary")
            assert summary.count == 30
            points = await client.list_latency_series(deployment="churn", step=datetime.timedelta(seconds=20))
            assert sum(p.summary.count for p in points) == 60
            await client.set_slo("canary-p99", deployment="churn", route="canary", latency_threshold_ms=50, min_count=5)
            assert [s.name async for s in client.list_slos(page_size=1)] == ["slos/canary-p99"]
            watch = client.watch_alerts()
            alert = await asyncio.wait_for(anext(watch), 30)
            watch.cancel()
            assert alert.slo == "slos/canary-p99" and watch.sequence == alert.sequence
            assert [a.sequence async for a in client.list_alerts()] == [alert.sequence]
            await client.record_inferences([inference("a1", 1, "primary", "no")])
            answer = await client.record_feedback({"a1": "no"})
            assert answer.accepted_count == 1
            report = await client.get_performance("churn", version=1)
            assert (report.labeled_count, report.accuracy) == (1, 1.0)
            with pytest.raises(errors.InvalidArgument) as caught:
                await client.set_slo("p", deployment="churn", latency_threshold_ms=50, window=-5)
            assert caught.value.field == "slo.window"

    asyncio.run(scenario())


@pytest.mark.slow
def test_drift_reports_and_policies(tmp_path: pathlib.Path) -> None:
    """Real registry and ingest processes: a split dataset, a model version trained on its ``train`` split."""
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "ingest")}
    env = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    env |= {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_LEVEL": "warning", "FERRY_TRAIN_ADDRESS": "127.0.0.1:9"}
    processes: list[ServiceProcess] = []
    try:
        for name in ("registry", "ingest"):
            (tmp_path / name).mkdir()
            state = {**env, "FERRY_STATE_DIR": str(tmp_path / name)}
            processes.append(spawn_and_wait(name, env=state, log_path=tmp_path / f"{name}.log", timeout=120))
        rng = np.random.default_rng(3)
        rows = pd.DataFrame({"x": rng.normal(0, 1, 600).round(3), "color": rng.choice(["red", "blue"], 600)})
        recipe = {
            "steps": [{"split": {"fractions": [{"name": "train", "fraction": 0.8}, {"name": "test", "fraction": 0.2}]}}]
        }
        with IngestClient(addresses["ingest"]) as ingest, RegistryClient(addresses["registry"]) as registry:
            raw = ingest.upload_dataset("points", rows)
            split = ingest.transform_dataset(raw.name, "points-split", recipe)
            registry.create_model("churn")
            registry.upload_model_version(
                "churn",
                b"monitor never reads the artifact",
                format="onnx",
                lineage={"dataset_version": split.name, "split": "train"},
            )
        (tmp_path / "monitor").mkdir()
        monitor_env = {**env, "FERRY_STATE_DIR": str(tmp_path / "monitor"), "FERRY_MONITOR_DRIFT_MIN_SAMPLES": "50"}
        monitor = spawn_and_wait("monitor", env=monitor_env, log_path=tmp_path / "monitor.log", timeout=120)
        processes.append(monitor)
        with MonitorClient(monitor.address, timeout=30) as client:
            # Live inputs: x moved by three standard deviations, colors as in training.
            live = [
                inference(f"d{i}", 1, "primary", "yes", inputs={"x": [float(x) + 3.0], "color": [color]})
                for i, (x, color) in enumerate(zip(rows["x"][:300], rows["color"][:300], strict=True))
            ]
            assert client.record_inferences(live) == 300
            report = client.get_drift_report("churn", version=1, last=datetime.timedelta(minutes=10))
            assert report.model_version == "models/churn/versions/1"
            assert report.reference_dataset_version == split.name and report.reference_split == "train"
            assert report.sample_count == 300 and report.drifted
            by_feature = {feature.feature: feature for feature in report.features}
            assert by_feature["x"].drifted and by_feature["x"].method == pb.DRIFT_METHOD_PSI
            assert not by_feature["color"].drifted
            ks = client.get_drift_report("models/churn/versions/1", method="ks")
            assert {f.feature: f.method for f in ks.features}["x"] == pb.DRIFT_METHOD_KS

            # The same report through `ferry monitor drift` (an alias resolved through the registry).
            with RegistryClient(addresses["registry"]) as registry:
                registry.set_alias("models/churn/aliases/production", 1)
            cli_env = {"FERRY_MONITOR_ADDRESS": monitor.address, "FERRY_REGISTRY_ADDRESS": addresses["registry"]}
            shown = CliRunner().invoke(app, ["monitor", "drift", "churn@production", "-o", "json"], env=cli_env)
            assert shown.exit_code == 0, shown.output
            as_json = json.loads(shown.stdout)
            assert as_json["model_version"] == "models/churn/versions/1" and as_json["drifted"] is True
            assert {f["feature"] for f in as_json["features"]} == {"x", "color"}
            text = CliRunner().invoke(
                app, ["monitor", "drift", "churn", "--version", "1", "--method", "ks"], env=cli_env
            )
            assert text.exit_code == 0, text.output
            assert "drifted" in text.stdout and f"{split.name} (split train)" in text.stdout
            assert any(line.split()[:2] == ["x", "ks"] for line in text.stdout.splitlines())

            stored = client.set_model_policy("models/churn", drift_threshold=0.3, retrain_on_drift=True)
            assert stored.name == "policies/churn"
            assert (stored.drift_threshold, stored.retrain_on_drift) == (pytest.approx(0.3), True)
            assert client.get_model_policy("churn") == stored
            assert client.get_model_policy("policies/churn") == stored

            with pytest.raises(errors.NotFound) as caught:
                client.set_model_policy("ghost", min_accuracy=0.9)
            assert caught.value.field == "policy.name"
            with pytest.raises(errors.InvalidArgument) as caught:
                client.set_model_policy("churn", min_accuracy=1.5)
            assert caught.value.field == "policy.min_accuracy"
            with pytest.raises(errors.NotFound) as caught:
                client.get_drift_report("churn", version=7)
            assert caught.value.field == "model_version"
            with pytest.raises(ValueError, match="drift method"):
                client.get_drift_report("churn", version=1, method="magic")
    finally:
        stop_all(processes)


def test_friendly_arguments_become_the_contracts_messages() -> None:
    assert span_filter(
        deployment="deployments/churn", model="models/churn", version=3, route="canary"
    ) == pb.SpanFilter(deployment="churn", model="churn", version=3, route="canary")
    assert model_version_name("churn", 3) == model_version_name("models/churn", 3) == "models/churn/versions/3"
    assert model_version_name("models/churn/versions/3") == "models/churn/versions/3"
    with pytest.raises(ValueError, match="already names"):
        model_version_name("models/churn/versions/3", 4)

    end = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.UTC)
    window = time_window(end=end, last=datetime.timedelta(minutes=15))
    assert window.start_time.ToDatetime(datetime.UTC) == end - datetime.timedelta(minutes=15)
    assert window.end_time.ToDatetime(datetime.UTC) == end
    naive = time_window(start=datetime.datetime(2026, 1, 31, 11, 0))  # naive = UTC
    assert naive.start_time.ToDatetime(datetime.UTC) == datetime.datetime(2026, 1, 31, 11, 0, tzinfo=datetime.UTC)
    assert not naive.HasField("end_time") and not time_window().HasField("start_time")
    with pytest.raises(ValueError, match="start or last"):
        time_window(start=end, last=datetime.timedelta(minutes=1))
    with pytest.raises(ValueError, match="positive"):
        time_window(last=datetime.timedelta(0))

    slo = slo_message(
        None,
        filter=pb.SpanFilter(deployment="churn"),
        percentile=99,
        latency_threshold_ms=50,
        max_error_rate=0,
        window=90,
        min_count=0,
        action="stop-canary",
    )
    assert (slo.window.seconds, slo.action) == (90, pb.BREACH_ACTION_STOP_CANARY)

    (label, rows, number, flag) = feedback_messages({"a": "yes", "b": ["x", "y"], "c": 2.5, "d": True})
    assert label.ground_truth.string_value == "yes" and label.request_id == "a"
    assert [v.string_value for v in rows.ground_truth.list_value.values] == ["x", "y"]
    assert number.ground_truth.number_value == 2.5 and flag.ground_truth.bool_value is True
