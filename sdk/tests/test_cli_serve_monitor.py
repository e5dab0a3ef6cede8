"""``ferry deploy`` / ``ferry predict`` / ``ferry monitor`` against real registry, serve and monitor processes.

Serve runs its embedded Triton and exports its spans and samples to monitor, as in the
local stack. The model ``churn`` has two versions registered without training
(:func:`ferry_serve.testing.tiny_classifier`: they answer differently); ``production`` is
on version 1. Commands run in-process (typer's CliRunner) with ``--output json`` where
values are checked, in text mode for the issue's examples, and ``monitor alerts --watch``
as a real ``ferry`` subprocess.
"""

from __future__ import annotations

import json
import os
import pathlib
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ferry_common.settings import load_settings
from ferry_monitor.testing import exporting_provider
from ferry_sdk import MonitorClient, RegistryClient, ServeClient, ServiceProcess, free_port, spawn_and_wait
from ferry_sdk.cli import app
from ferry_sdk.cli._common import CliError
from ferry_sdk.cli.deploy import parse_target
from ferry_sdk.cli.monitor import parse_duration, parse_time
from ferry_sdk.cli.predict import read_rows, split_target
from ferry_sdk.spawn import stop_all
from ferry_serve.testing import CLASSES, tiny_classifier
from ferry_serve.testing import TINY_SIGNATURE as SIGNATURE

FERRY = str(pathlib.Path(sys.executable).parent / "ferry")
ROWS = pd.DataFrame(
    {"x": [20.0, 0.0, -10.0, 0.5], "color": ["red", "green", "blue", "red"], "customer": ["a", "b", "c", "d"]}
)


class Stack:
    def __init__(self, env: dict[str, str], root: pathlib.Path) -> None:
        self.env = env
        self.root = root

    def invoke(self, *args: str) -> Any:
        return CliRunner().invoke(app, list(args), env=self.env)

    def json(self, *args: str) -> Any:
        result = self.invoke(*args, "--output", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def error(self, *args: str, exit_code: int = 1) -> dict[str, Any]:
        result = self.invoke(*args, "--output", "json")
        assert result.exit_code == exit_code, result.output
        error: dict[str, Any] = json.loads(result.stdout)["error"]
        return error

    def address(self, service: str) -> str:
        return self.env[f"FERRY_{service.upper()}_ADDRESS"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("cli-serve-monitor")
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "ingest", "train", "serve", "monitor")}
    env = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    env |= {"FERRY_LOG_LEVEL": "warning", "FERRY_SHUTDOWN_GRACE_SECONDS": "5"}
    processes: list[ServiceProcess] = []
    try:
        own = {
            "registry": {"OTEL_TRACES_EXPORTER": "none"},
            "monitor": {"OTEL_TRACES_EXPORTER": "none", "FERRY_MONITOR_SLO_EVALUATE_SECONDS": "1"},
            # Serve exports its spans to monitor (FERRY_MONITOR_ADDRESS), in batches every 200 ms.
            "serve": {"OTEL_BSP_SCHEDULE_DELAY": "200", "FERRY_SERVE_POLL_MS": "100", "FERRY_SERVE_DRAIN_SECONDS": "1"},
        }
        for name in ("registry", "monitor", "serve"):
            state = root / name
            state.mkdir()
            service_env = {**env, **own[name], "FERRY_STATE_DIR": str(state)}
            processes.append(spawn_and_wait(name, env=service_env, log_path=root / f"{name}.log", timeout=180))
        with RegistryClient(addresses["registry"], settings=load_settings("registry", {})) as registry:
            registry.create_model("churn")
            for bias in (0.0, 5.0):
                registry.upload_model_version(
                    "churn",
                    tiny_classifier(bias=bias),
                    format="onnx",
                    signature=SIGNATURE,
                    params={"classes": json.dumps(CLASSES)},
                )
            registry.set_alias("models/churn/aliases/production", 1)
        yield Stack(env, root)
    finally:
        stop_all(processes)


def served(deployment: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((v["version"], v["route"]) for v in deployment.get("served_versions", []))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.xdist_group("triton")
def test_deploy_predict_monitor_promote_delete(stack: Stack, tmp_path: pathlib.Path) -> None:
    rows_csv = tmp_path / "rows.csv"
    ROWS.to_csv(rows_csv, index=False)
    rows_json = tmp_path / "rows.json"
    rows_json.write_text(json.dumps(ROWS.to_dict(orient="records")))

    # The example, in text mode.
    created = stack.invoke("deploy", "create", "churn", "--model", "models/churn", "--alias", "production")
    assert created.exit_code == 0, created.output
    assert "deployments/churn  READY" in created.stdout and "alias production" in created.stdout
    shown = stack.json("deploy", "show", "churn")
    assert shown["state"] == "STATE_READY" and shown["model"] == "models/churn"
    assert shown["primary"] == {"alias": "production"} and served(shown) == [("1", "ROUTE_PRIMARY")]

    # Predictions: the CLI's values are ServeClient.predict's on the same rows.
    with ServeClient(stack.address("serve"), settings=load_settings("serve", {})) as serve:
        by_sdk = {version: serve.predict("churn", ROWS, version=version) for version in ("production", "1")}
    text = stack.invoke("predict", "churn@production", "--input", str(rows_csv))
    assert text.exit_code == 0, text.output
    assert "probability_setosa" in text.stdout and "customer" in text.stdout
    assert "4 row(s) answered by deployments/churn version 1" in text.stderr
    answer = stack.json("predict", "churn@production", "--input", str(rows_csv), "--request-id", "cli-1")
    assert (answer["deployment"], answer["model_version"], answer["request_id"]) == ("deployments/churn", 1, "cli-1")
    got = pd.DataFrame(answer["predictions"])
    expected = by_sdk["production"]
    assert list(got.columns) == list(expected.columns)
    assert list(got["label"]) == list(expected["label"]) and list(got["customer"]) == ["a", "b", "c", "d"]
    for name in CLASSES:
        np.testing.assert_allclose(got[f"probability_{name}"], expected[f"probability_{name}"], rtol=1e-6)
    from_json = stack.json("predict", "churn@1", "--input", str(rows_json))
    assert from_json["model_version"] == 1
    assert [row["label"] for row in from_json["predictions"]] == list(by_sdk["1"]["label"])
    scored = tmp_path / "scored.csv"
    written = stack.json("predict", "churn", "--input", str(rows_json), "--out", str(scored))
    assert written["rows"] == 4 and written["out"] == str(scored)
    assert list(pd.read_csv(scored)["label"]) == list(expected["label"])

    # A canary on version 2 at 30%, then its share alone moved to 50%.
    canary = stack.json("deploy", "update", "churn", "--canary", "2", "--percent", "30")
    assert canary["canary"] == {"target": {"version": "2"}, "percent": 30}
    assert served(canary) == [("1", "ROUTE_PRIMARY"), ("2", "ROUTE_CANARY")]
    moved = stack.json("deploy", "update", "churn", "--percent", "50")
    assert moved["canary"] == {"target": {"version": "2"}, "percent": 50}
    kept = stack.json("deploy", "update", "churn", "--canary", "2")  # a new target keeps the current share
    assert kept["canary"] == {"target": {"version": "2"}, "percent": 50}
    listed = stack.json("deploy", "list")
    assert [d["name"] for d in listed["deployments"]] == ["deployments/churn"]
    table = stack.invoke("deploy", "list")
    assert "v2 50%" in table.stdout and "1 (primary), 2 (canary)" in table.stdout

    # Monitor sees serve's spans (the example in text mode too).
    for _ in range(12):  # half of the requests that name no version go to the canary
        assert stack.invoke("predict", "churn", "--input", str(rows_csv)).exit_code == 0
    summary = wait_until(
        lambda: (
            (found := stack.json("monitor", "latency", "--deployment", "churn"))
            and int(found.get("count", 0)) >= 15
            and found
        ),
        "serve's spans in monitor",
    )
    assert float(summary["p99_ms"]) > 0 and float(summary["max_ms"]) >= float(summary["p50_ms"])
    canary_only = stack.json("monitor", "latency", "--deployment", "churn", "--route", "canary", "--last", "10m")
    assert 0 < int(canary_only["count"]) < int(summary["count"])
    latency_text = stack.invoke("monitor", "latency", "--deployment", "churn")
    assert latency_text.exit_code == 0 and "p99" in latency_text.stdout and "requests" in latency_text.stdout
    series = stack.json("monitor", "series", "--deployment", "churn", "--last", "10m", "--step", "1m")
    assert sum(int(p["summary"].get("count", 0)) for p in series["points"]) >= int(summary["count"])

    # Feedback for the request predicted above: accuracy of version 1 from ground truth.
    truth = list(expected["label"])
    truth[0] = "not-that"
    with MonitorClient(stack.address("monitor"), settings=load_settings("monitor", {})) as monitor:
        wait_until(lambda: monitor.record_feedback({"cli-1": truth}).accepted_count == 1, "serve's sample of cli-1")
    performance = stack.json("monitor", "performance", "churn@production")
    assert performance["model_version"] == "models/churn/versions/1"
    assert performance["labeled_count"] == "4" and performance["accuracy"] == pytest.approx(0.75)

    # An SLO the canary breaches at once; monitor stops the canary (its share to 0%) and alerts.
    slo = stack.json("monitor", "slo", "set", "churn-canary", "--deployment", "churn", "--route", "canary",
                     "--percentile", "99", "--threshold-ms", "0.001", "--min-count", "1", "--window", "10m",
                     "--action", "stop-canary")  # fmt: skip
    assert slo["name"] == "slos/churn-canary" and slo["action"] == "BREACH_ACTION_STOP_CANARY"
    assert slo["filter"] == {"deployment": "churn", "route": "canary"} and slo["window"] == "600s"
    alerts = wait_until(lambda: stack.json("monitor", "alerts")["alerts"], "the canary's alert")
    assert alerts[0]["slo"] == "slos/churn-canary" and alerts[0]["deployment"] == "deployments/churn"
    assert alerts[0]["action_result"] == "deployments/churn: canary set to 0%"
    assert stack.json("deploy", "show", "churn")["canary"].get("percent", 0) == 0
    slos = stack.json("monitor", "slo", "list")["slos"]
    assert [(s["name"], s.get("breached", False)) for s in slos] == [("slos/churn-canary", True)]
    listed_text = stack.invoke("monitor", "slo", "list")
    assert "p99 <= 0.001 ms" in listed_text.stdout and "BREACHED" in listed_text.stdout
    watched = watch_first_alert(stack)
    assert watched["sequence"] == alerts[0]["sequence"] and watched["slo"] == "slos/churn-canary"

    # Promote: production moves to version 2 (compare-and-set on 1), the canary goes.
    promoted = stack.json("deploy", "promote", "churn")
    assert "canary" not in promoted and promoted["primary"] == {"alias": "production"}
    assert served(promoted) == [("2", "ROUTE_PRIMARY")]
    with RegistryClient(stack.address("registry"), settings=load_settings("registry", {})) as registry:
        assert registry.get_alias("models/churn/aliases/production").version == 2
    assert stack.json("predict", "churn", "--input", str(rows_csv))["model_version"] == 2
    nothing = stack.error("deploy", "promote", "churn")
    assert (nothing["code"], nothing["field"]) == ("FAILED_PRECONDITION", "canary")

    # --pin: a canary on version 1, promoted as the deployment's fixed primary; the alias stays.
    stack.json("deploy", "update", "churn", "--canary", "1", "--percent", "10")
    pinned = stack.json("deploy", "promote", "churn", "--pin")
    assert pinned["primary"] == {"version": "1"} and "canary" not in pinned
    assert served(pinned) == [("1", "ROUTE_PRIMARY")]
    with RegistryClient(stack.address("registry"), settings=load_settings("registry", {})) as registry:
        assert registry.get_alias("models/churn/aliases/production").version == 2

    deleted = stack.json("deploy", "delete", "churn")
    assert deleted == {"deleted": "deployments/churn"}
    gone = stack.error("deploy", "show", "churn")
    assert gone["code"] == "NOT_FOUND"


def watch_first_alert(stack: Stack) -> dict[str, Any]:
    """``ferry monitor alerts --watch --output json`` as a subprocess: its first line, then Ctrl-C."""
    env = {**os.environ, **stack.env}
    with subprocess.Popen(
        [FERRY, "--output", "json", "monitor", "alerts", "--watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(process.stdout, selectors.EVENT_READ)
                assert selector.select(timeout=60), "no alert line within 60 s"
                line = process.stdout.readline()
            assert process.poll() is None, "a watch keeps running"
            process.send_signal(signal.SIGINT)  # Ctrl-C
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130
    found: dict[str, Any] = json.loads(line)
    assert f"--since {found['sequence']}" in stderr, stderr
    return found


@pytest.mark.slow
@pytest.mark.xdist_group("triton")
def test_traces_and_policies(stack: Stack) -> None:
    provider = exporting_provider(stack.address("monitor"), "notebook")
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("score-batch") as parent, tracer.start_as_current_span("load-rows"):
        trace_id = format(parent.get_span_context().trace_id, "032x")
    assert provider.force_flush(30_000)
    provider.shutdown()
    trace = stack.json("monitor", "trace", trace_id)
    assert trace["trace_id"] == trace_id
    assert [(span["name"], span["service"]) for span in trace["spans"]] == [
        ("score-batch", "notebook"),
        ("load-rows", "notebook"),
    ]
    text = stack.invoke("monitor", "trace", trace_id)
    lines = {line.strip().split()[0]: line for line in text.stdout.splitlines()[2:]}
    assert text.exit_code == 0 and set(lines) == {"score-batch", "load-rows"}
    assert lines["load-rows"].index("load-rows") == lines["score-batch"].index("score-batch") + 2  # the child indented

    policy = stack.json("monitor", "policy", "set", "churn", "--drift-threshold", "0.25", "--retrain-on-drift")
    assert policy == {"name": "policies/churn", "drift_threshold": 0.25, "retrain_on_drift": True}
    assert stack.json("monitor", "policy", "show", "models/churn") == policy
    shown = stack.invoke("monitor", "policy", "show", "churn")
    assert "retrain on drift  yes" in shown.stdout and "min accuracy      0 (not checked)" in shown.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("triton")
def test_errors_exit_non_zero_with_the_servers_message_and_field(stack: Stack, tmp_path: pathlib.Path) -> None:
    rows_csv = tmp_path / "rows.csv"
    ROWS.to_csv(rows_csv, index=False)
    stack.json("deploy", "create", "errors", "--model", "churn", "--version", "1")

    taken = stack.error("deploy", "create", "errors", "--model", "churn")
    assert taken["code"] == "ALREADY_EXISTS" and "errors" in taken["message"]
    ghost = stack.error("deploy", "create", "ghost", "--model", "models/ghost")
    assert (ghost["code"], ghost["field"]) == ("NOT_FOUND", "deployment.model")
    no_alias = stack.error("deploy", "create", "staged", "--model", "churn", "--alias", "staging")
    assert (no_alias["code"], no_alias["field"]) == ("FAILED_PRECONDITION", "deployment.primary.alias")
    no_version = stack.error("deploy", "update", "errors", "--canary", "9", "--percent", "10")
    assert no_version["code"] == "NOT_FOUND" and no_version["field"].startswith("deployment.canary")
    stale = stack.error("deploy", "update", "errors", "--sample-rate", "0.5", "--etag", "stale")
    assert (stale["code"], stale["field"]) == ("ABORTED", "deployment.etag")
    no_canary = stack.error("deploy", "update", "errors", "--percent", "20")
    assert no_canary["code"] == "FAILED_PRECONDITION"
    wrong_version = stack.error("predict", "errors@7", "--input", str(rows_csv))
    assert wrong_version["code"] == "NOT_FOUND" and wrong_version["field"] == "model_version"
    missing_input = tmp_path / "no-color.csv"
    ROWS.drop(columns=["color"]).to_csv(missing_input, index=False)
    missing = stack.error("predict", "errors", "--input", str(missing_input))
    assert missing["code"] == "INVALID_ARGUMENT" and "color" in missing["message"]
    bad_slo = stack.error("monitor", "slo", "set", "bad", "--deployment", "errors", "--percentile", "150",
                          "--threshold-ms", "5")  # fmt: skip
    assert (bad_slo["code"], bad_slo["field"]) == ("INVALID_ARGUMENT", "slo.percentile")
    bad_filter = stack.error("monitor", "latency", "--deployment", "Not_An_Id")
    assert (bad_filter["code"], bad_filter["field"]) == ("INVALID_ARGUMENT", "filter.deployment")
    unknown_alias = stack.error("monitor", "performance", "churn@staging")
    assert unknown_alias["code"] == "NOT_FOUND"

    # A version Triton cannot load: the deployment is FAILED, the command exits 4 with the reason.
    with RegistryClient(stack.address("registry"), settings=load_settings("registry", {})) as registry:
        registry.create_model("broken")
        registry.upload_model_version("broken", b"not an onnx model", format="onnx", signature=SIGNATURE)
    failed = stack.error("deploy", "create", "broken", "--version", "1", exit_code=4)
    assert failed["code"] == "FAILED" and "deployments/broken" in failed["message"]
    stack.json("deploy", "delete", "broken")

    no_lineage = stack.error("monitor", "drift", "churn@1", "--method", "ks")
    assert (no_lineage["code"], no_lineage["field"]) == ("FAILED_PRECONDITION", "model_version")
    ghost_policy = stack.error("monitor", "policy", "set", "ghost", "--min-accuracy", "0.9")
    assert (ghost_policy["code"], ghost_policy["field"]) == ("NOT_FOUND", "policy.name")

    # Problems found before any call: exit 1 naming the option; usage errors exit 2.
    percent = stack.error("deploy", "update", "errors", "--canary", "2", "--percent", "120")
    assert (percent["code"], percent["field"]) == ("INVALID_ARGUMENT", "--percent")
    target = stack.error("predict", "errors@", "--input", str(rows_csv))
    assert target["field"] == "DEPLOYMENT"
    window = stack.error("monitor", "series", "--last", "soon")
    assert window["field"] == "--last"
    action = stack.error("monitor", "slo", "set", "x", "--threshold-ms", "5", "--action", "panic")
    assert action["code"] == "INVALID_ARGUMENT" and "panic" in action["message"]
    assert stack.invoke("predict", "errors").exit_code == 2  # --input is required
    nothing = stack.error("deploy", "update", "errors")
    assert nothing["code"] == "INVALID_ARGUMENT" and "nothing to change" in nothing["message"]

    # In text mode the message and the field go to stderr, nothing to stdout.
    text = stack.invoke("deploy", "create", "ghost", "--model", "models/ghost")
    assert text.exit_code == 1 and text.stdout == ""
    assert "NOT_FOUND" in text.stderr and "field: deployment.model" in text.stderr
    stack.json("deploy", "delete", "errors")


def test_rows_are_read_from_csv_json_and_json_lines(tmp_path: pathlib.Path) -> None:
    expected = ROWS.to_dict(orient="list")
    (tmp_path / "rows.csv").write_text(ROWS.to_csv(index=False))
    (tmp_path / "records.json").write_text(json.dumps(ROWS.to_dict(orient="records")))
    (tmp_path / "columns.json").write_text(json.dumps(expected))
    (tmp_path / "wrapped.json").write_text(json.dumps({"rows": ROWS.to_dict(orient="records")}))
    (tmp_path / "rows.jsonl").write_text(ROWS.to_json(orient="records", lines=True))
    (tmp_path / "rows.txt").write_text(ROWS.to_csv(index=False))
    for name in ("rows.csv", "records.json", "columns.json", "wrapped.json", "rows.jsonl"):
        assert read_rows(tmp_path / name).to_dict(orient="list") == expected, name
    assert read_rows(tmp_path / "rows.txt", "csv").to_dict(orient="list") == expected
    with pytest.raises(CliError, match="--format"):
        read_rows(tmp_path / "rows.txt")
    (tmp_path / "ragged.json").write_text(json.dumps({"x": [1, 2], "color": ["red"]}))
    with pytest.raises(CliError, match="different lengths"):
        read_rows(tmp_path / "ragged.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(CliError, match="not valid JSON") as caught:
        read_rows(tmp_path / "broken.json")
    assert caught.value.field == "--input"


def test_targets_durations_and_times_parse() -> None:
    assert split_target("churn") == ("churn", "")
    assert split_target("deployments/churn@production") == ("churn", "production")
    assert split_target("churn@3") == ("churn", "3")
    for bad in ("churn@", "@3", ""):
        with pytest.raises(CliError):
            split_target(bad)
    assert parse_target("3", "--canary") == 3 and parse_target("staging", "--canary") == "staging"
    for bad in ("0", "-1", "3b"):
        with pytest.raises(CliError) as caught:
            parse_target(bad, "--canary")
        assert caught.value.field == "--canary"
    assert parse_duration("90", "--last").total_seconds() == 90
    assert [parse_duration(text, "--last").total_seconds() for text in ("250ms", "30s", "5m", "1.5h", "2d")] == [
        0.25, 30, 300, 5400, 172800,
    ]  # fmt: skip
    for bad in ("soon", "0s", "-5m", "5w"):
        with pytest.raises(CliError):
            parse_duration(bad, "--last")
    assert parse_time("2026-01-31T12:00:00Z", "--end").isoformat() == "2026-01-31T12:00:00+00:00"
    assert parse_time("2026-01-31T12:00:00", "--end").tzinfo is not None  # no zone: UTC
    with pytest.raises(CliError):
        parse_time("yesterday", "--start")
