"""The `ferry` CLI against real services.

`ferry up` / `status` / `down` drive the real stack as a user would (subprocesses); the
datasets / train / models commands run in-process (typer's CliRunner) against registry,
ingest and train processes: JSON output parses, errors exit with the documented code and
name the server's field, every command's --help carries an example.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from ferry_common.process import closed_address
from ferry_common.pytest_plugin import free_port
from ferry_sdk import RegistryClient
from ferry_sdk.cli import app
from ferry_sdk.spawn import ServiceProcess, spawn_and_wait

FERRY = str(pathlib.Path(sys.executable).parent / "ferry")
SERVICES = ("registry", "ingest", "train", "serve", "monitor")


@pytest.mark.slow
def test_up_status_down(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "FERRY_STATE_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "none"}
    env.update({f"FERRY_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for name in SERVICES})
    try:
        up = subprocess.run([FERRY, "up"], env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr
        for name in SERVICES:
            assert f"ferry-{name}" in up.stderr
        status = subprocess.run([FERRY, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0
        assert status.stdout.count("SERVING") == 5
        assert (tmp_path / "logs" / "registry.log").stat().st_size > 0
    finally:
        down = subprocess.run([FERRY, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0
    assert down.stderr.count("stopped") == 5
    after = subprocess.run([FERRY, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert after.returncode == 1
    assert after.stdout.count("DOWN") == 5


def test_up_rejects_an_unknown_service(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "FERRY_STATE_DIR": str(tmp_path)}
    result = subprocess.run([FERRY, "up", "billing"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unknown service 'billing'" in result.stderr


# -- datasets / train / models, in-process against real services ---------------------


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    seen = []
    for path, command in _commands(get_command(app)):
        if getattr(command, "commands", None) and path:
            continue  # a group: its commands carry the examples
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example: ferry" in result.output, path
        if path:
            assert "--output" in result.output, path
        seen.append(" ".join(path))
    for expected in ("datasets upload", "train run", "train watch", "models alias set", "models lineage", "up"):
        assert expected in seen


def _shop_connection(root: pathlib.Path) -> pathlib.Path:
    """A SQLite database with an ``orders`` table, configured as ingest's named connection ``shop``."""
    database = root / "shop.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER, amount REAL, country TEXT)")
        connection.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, i * 1.5, "NL") for i in range(25)])
    connection.close()
    path = root / "connections.yaml"
    path.write_text(f"connections:\n  shop:\n    url: sqlite:///{database}\n")
    return path


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """registry, ingest and train (train runs no job: they stay queued) with their own state dir."""
    root = tmp_path_factory.mktemp("cli-services")
    env = {
        "FERRY_STATE_DIR": str(root),
        "OTEL_TRACES_EXPORTER": "none",
        "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0",
        "FERRY_INGEST_CONNECTIONS_FILE": str(_shop_connection(root)),
        **{f"FERRY_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for name in SERVICES},
    }
    started: list[ServiceProcess] = []
    try:
        for name in ("registry", "ingest", "train"):
            started.append(spawn_and_wait(name, env=env, log_path=root / f"{name}.log", timeout=120))
        yield env
    finally:
        for process in started:
            process.stop()


def invoke(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env=env)
    return result


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("cli-data") / "churn.csv"
    rows = 60
    pd.DataFrame(
        {
            "tenure": [i % 50 + 1 for i in range(rows)],
            "charges": [20.0 + (i * 7) % 90 for i in range(rows)],
            "contract": [("monthly", "yearly")[i % 2] for i in range(rows)],
            "churned": [int(i % 3 == 0) for i in range(rows)],
        }
    ).to_csv(path, index=False)
    return path


def test_upload_with_split_show_profile_list_as_json(services: dict[str, str], churn_csv: pathlib.Path) -> None:
    result = invoke(
        services, "datasets", "upload", str(churn_csv), "--name", "churn", "--split", "train=0.75,validation=0.25",
        "--stratify", "churned", "--label", "team=risk", "--output", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    version = as_json(result)
    assert version["name"] == "datasets/churn/versions/1"
    assert version["row_count"] == "60"  # int64 as a string, proto field names
    assert {split["name"]: split["row_count"] for split in version["splits"]} == {"train": "45", "validation": "15"}
    assert version["lineage"]["parent"] == "datasets/churn-raw/versions/1"
    assert version["labels"] == {"team": "risk"}

    shown = as_json(invoke(services, "--output", "json", "datasets", "show", "churn"))
    assert shown["dataset"]["name"] == "datasets/churn"
    assert [v["name"] for v in shown["versions"]] == ["datasets/churn/versions/1"]

    profile = as_json(invoke(services, "datasets", "profile", version["name"], "--split", "train", "-o", "json"))
    assert profile["row_count"] == "45"
    assert [column["name"] for column in profile["columns"]] == ["tenure", "charges", "contract", "churned"]

    listed = invoke({**services, "FERRY_OUTPUT": "json"}, "datasets", "list", "--filter", "labels.team=risk")
    assert sorted(d["name"] for d in as_json(listed)) == ["datasets/churn", "datasets/churn-raw"]

    text = invoke(services, "datasets", "show", version["name"])
    assert text.exit_code == 0
    assert "train (45 rows), validation (15 rows)" in text.stdout

    out = churn_csv.parent / "train.csv"
    downloaded = invoke(services, "datasets", "download", version["name"], str(out), "--split", "train",
                        "--format", "csv", "-o", "json")  # fmt: skip
    assert downloaded.exit_code == 0, downloaded.output
    assert len(pd.read_csv(out)) == 45


def test_transform_with_a_recipe_file(
    services: dict[str, str], churn_csv: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    invoke(services, "datasets", "upload", str(churn_csv), "--name", "churn-raw")
    recipe = _recipe(
        tmp_path,
        "  - drop: {columns: [charges]}\n  - filter: {column: contract, operator: FILTER_OPERATOR_EQ, value: monthly}",
    )
    result = invoke(services, "datasets", "transform", "datasets/churn-raw/versions/1", "--recipe", str(recipe),
                    "--name", "monthly", "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    version = as_json(result)
    assert [field["name"] for field in version["schema"]["fields"]] == ["tenure", "contract", "churned"]
    assert version["row_count"] == "30"
    assert version["lineage"]["parent"] == "datasets/churn-raw/versions/1"

    bad_file = _recipe(tmp_path, "  - filter: {column: contract, op: eq}")
    bad = invoke(services, "datasets", "transform", "datasets/churn-raw/versions/1", "--recipe", str(bad_file),
                 "--name", "x", "-o", "json")  # fmt: skip
    assert bad.exit_code == 1
    assert as_json(bad)["error"]["field"] == "--recipe"
    nope = _recipe(tmp_path, "  - drop: {columns: [nope]}")
    unknown_column = invoke(services, "datasets", "transform", "datasets/churn-raw/versions/1", "--recipe", str(nope),
                            "--name", "x", "-o", "json")  # fmt: skip
    assert unknown_column.exit_code == 1
    error = as_json(unknown_column)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["field"] and "nope" in error["message"]


def _recipe(directory: pathlib.Path, steps: str) -> pathlib.Path:
    path = directory / "steps.yaml"
    path.write_text(f"steps:\n{steps}\n")
    return path


def test_import_from_sql(services: dict[str, str]) -> None:
    query = "SELECT id, amount FROM orders WHERE id < 20"
    result = invoke(services, "datasets", "import", "--name", "orders", "--connection", "shop", "--query", query,
                    "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    version = as_json(result)
    assert version["row_count"] == "20"
    assert version["lineage"]["source_uri"] == "connection:shop"
    assert version["lineage"]["source_query"] == query
    text = invoke(services, "datasets", "import", "--name", "orders", "--connection", "shop",
                  "--query", "SELECT 1 AS one")  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "datasets/orders/versions/2" in text.stdout

    refused = invoke(services, "datasets", "import", "--name", "orders", "--sql", "sqlite:////etc/passwd",
                     "--query", "SELECT 1", "-o", "json")  # fmt: skip
    assert refused.exit_code == 1
    assert as_json(refused)["error"]["field"] == "sql.url"
    no_source = invoke(services, "datasets", "import", "--name", "orders", "--query", "SELECT 1", "-o", "json")
    assert no_source.exit_code == 1
    assert as_json(no_source)["error"]["field"] == "--sql"


def test_errors_exit_with_the_servers_message_and_field(services: dict[str, str], churn_csv: pathlib.Path) -> None:
    bad_id = invoke(services, "datasets", "upload", str(churn_csv), "--name", "Bad_Id", "-o", "json")
    assert bad_id.exit_code == 1
    error = as_json(bad_id)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["field"] == "header.dataset_id"
    assert "Bad_Id" in error["message"]

    missing = invoke(services, "models", "alias", "set", "models/nope/aliases/production", "1")
    assert missing.exit_code == 1
    assert "NOT_FOUND" in missing.stderr
    assert missing.stdout == ""

    if invoke(services, "datasets", "show", "datasets/churn/versions/1").exit_code != 0:  # tests may run alone
        invoke(services, "datasets", "upload", str(churn_csv), "--name", "churn", "--split",
               "train=0.75,validation=0.25")  # fmt: skip
    as_text = invoke(services, "datasets", "show", "datasets/churn/versions/9")
    assert as_text.exit_code == 1
    assert "NOT_FOUND" in as_text.stderr and "version 9 not found" in as_text.stderr
    assert "field: name" in as_text.stderr


def test_usage_errors_exit_2_and_local_problems_exit_1(services: dict[str, str], tmp_path: pathlib.Path) -> None:
    assert invoke(services, "datasets", "upload").exit_code == 2
    assert invoke(services, "datasets", "upload", str(tmp_path / "absent.csv")).exit_code == 2
    bad_split = invoke(services, "datasets", "upload", __file__, "--split", "train=lots", "-o", "json")
    assert bad_split.exit_code == 1
    assert as_json(bad_split)["error"]["field"] == "--split"
    no_model = invoke(services, "train", "run", "--dataset", "datasets/churn/versions/1", "--target", "churned",
                      "-o", "json")  # fmt: skip
    assert no_model.exit_code == 1
    assert as_json(no_model)["error"]["field"] == "--register-model"


def test_an_unreachable_service_exits_3_naming_it(tmp_path: pathlib.Path) -> None:
    address = closed_address()
    env = {"FERRY_STATE_DIR": str(tmp_path), "FERRY_REGISTRY_ADDRESS": address, "FERRY_CALL_TIMEOUT_SECONDS": "5"}
    result = invoke(env, "models", "list", "-o", "json")
    assert result.exit_code == 3
    error = as_json(result)["error"]
    assert error["code"] == "UNAVAILABLE"
    assert f"ferry-registry at {address}" in error["message"]
    assert "ferry up" in error["message"]


def test_train_run_show_list_cancel_with_a_config_file(
    services: dict[str, str], churn_csv: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    if invoke(services, "datasets", "show", "datasets/churn/versions/1").exit_code != 0:
        invoke(services, "datasets", "upload", str(churn_csv), "--name", "churn", "--split",
               "train=0.75,validation=0.25")  # fmt: skip
    config = tmp_path / "job.yaml"
    config.write_text(
        "dataset_version: datasets/churn/versions/1\n"
        "target: churned\n"
        "register_model: models/churn\n"
        "model: {mlp: {hidden_units: [8], dropout: 0.0}}\n"
        "hyperparameters: {max_epochs: 7, batch_size: 16, seed: 3}\n"
    )
    created = invoke(services, "train", "run", "--config", str(config), "--epochs", "2", "--id", "cli-config",
                     "-o", "json")  # fmt: skip
    assert created.exit_code == 0, created.output
    job = as_json(created)
    assert job["name"] == "trainingJobs/cli-config"
    assert job["state"] == "STATE_QUEUED"
    assert job["hyperparameters"]["max_epochs"] == 2  # the flag wins over the file
    assert job["hyperparameters"]["seed"] == "3"
    assert job["model"]["mlp"]["hidden_units"] == [8]

    shown = as_json(invoke(services, "train", "show", "cli-config", "-o", "json"))
    assert shown["target"] == "churned"
    listed = as_json(invoke(services, "train", "list", "-o", "json"))
    assert "trainingJobs/cli-config" in [j["name"] for j in listed]

    bad_target = invoke(services, "train", "run", "--dataset", "datasets/churn/versions/1", "--target", "nope",
                        "--register-model", "churn", "-o", "json")  # fmt: skip
    assert bad_target.exit_code == 1
    assert as_json(bad_target)["error"]["field"] == "training_job.target"

    cancelled = as_json(invoke(services, "train", "cancel", "cli-config", "-o", "json"))
    assert cancelled["state"] == "STATE_CANCELLED"
    watched = invoke(services, "train", "watch", "cli-config", "-o", "json")
    assert watched.exit_code == 4  # it ended, but not SUCCEEDED
    assert as_json(watched)["state"] == "STATE_CANCELLED"


def test_train_run_splits_a_plain_upload_first_unless_told_not_to(
    services: dict[str, str], churn_csv: pathlib.Path
) -> None:
    plain = as_json(invoke(services, "datasets", "upload", str(churn_csv), "--name", "plain", "-o", "json"))
    assert plain["name"] == "datasets/plain/versions/1" and not plain.get("splits")

    refused = invoke(services, "train", "run", "--dataset", "datasets/plain/versions/1", "--target", "churned",
                     "--register-model", "models/plain", "--no-auto-split", "-o", "json")  # fmt: skip
    assert refused.exit_code == 1
    error = as_json(refused)["error"]
    assert error["code"] in ("NOT_FOUND", "FAILED_PRECONDITION") and "split" in error["field"], error

    created = invoke(services, "train", "run", "--dataset", "datasets/plain/versions/1", "--target", "churned",
                     "--register-model", "models/plain", "--epochs", "1", "--validation-fraction", "0.25",
                     "-o", "json")  # fmt: skip
    assert created.exit_code == 0, created.output
    job = as_json(created)
    assert job["dataset_version"] == "datasets/plain/versions/2"
    split = as_json(invoke(services, "datasets", "show", "datasets/plain/versions/2", "-o", "json"))
    rows = {s["name"]: int(s["row_count"]) for s in split["splits"]}
    assert rows == {"train": int(plain["row_count"]) * 3 // 4, "validation": int(plain["row_count"]) // 4}
    assert split["lineage"]["parent"] == "datasets/plain/versions/1"
    invoke(services, "train", "cancel", job["name"], "-o", "json")


def test_models_versions_aliases_and_lineage(services: dict[str, str], tmp_path: pathlib.Path) -> None:
    with RegistryClient(services["FERRY_REGISTRY_ADDRESS"]) as registry:
        registry.create_model("fraud", labels={"team": "risk"})
        for number in (1, 2):
            registry.upload_model_version(
                "fraud",
                f"artifact {number}".encode(),
                format="onnx",
                metrics={"auc": 0.8 + number / 100},
                lineage={"dataset_version": "datasets/churn/versions/1", "split": "train"},
            )
    listed = as_json(invoke(services, "models", "list", "--filter", "labels.team=risk", "-o", "json"))
    assert [m["name"] for m in listed] == ["models/fraud"]
    versions = as_json(invoke(services, "models", "versions", "fraud", "-o", "json"))
    assert [v["version"] for v in versions] == ["2", "1"]
    assert versions[0]["metrics"]["auc"] == pytest.approx(0.82)

    alias = "models/fraud/aliases/production"
    assert as_json(invoke(services, "models", "alias", "set", alias, "1", "-o", "json"))["version"] == "1"
    moved = invoke(services, "models", "alias", "set", alias, "2", "--expected-version", "1", "--reason", "better")
    assert moved.exit_code == 0, moved.output
    assert "version 2" in moved.stdout
    stale = invoke(services, "models", "alias", "set", alias, "1", "--expected-version", "1", "-o", "json")
    assert stale.exit_code == 1
    assert as_json(stale)["error"]["code"] == "ABORTED"
    assert as_json(stale)["error"]["field"] == "expected_version"

    shown = as_json(invoke(services, "models", "show", alias, "-o", "json"))
    assert shown["name"] == "models/fraud/versions/2"
    assert shown["aliases"] == ["production"]
    model = as_json(invoke(services, "models", "show", "fraud", "-o", "json"))
    assert [(a["name"], a["version"]) for a in model["aliases"]] == [(alias, "2")]

    rolled = as_json(invoke(services, "models", "alias", "rollback", alias, "--reason", "oops", "-o", "json"))
    assert rolled["version"] == "1"
    history = as_json(invoke(services, "models", "alias", "history", alias, "-o", "json"))
    assert [(e["kind"], e.get("reason", "")) for e in history] == [
        ("ALIAS_EVENT_KIND_SET", ""),
        ("ALIAS_EVENT_KIND_SET", "better"),
        ("ALIAS_EVENT_KIND_ROLLBACK", "oops"),
    ]
    aliases = as_json(invoke(services, "models", "alias", "list", "fraud", "-o", "json"))
    assert [(a["name"], a["version"]) for a in aliases] == [(alias, "1")]

    out = tmp_path / "model.onnx"
    downloaded = invoke(services, "models", "download", alias, str(out), "-o", "json")
    assert downloaded.exit_code == 0, downloaded.output
    assert out.read_bytes() == b"artifact 1"

    lineage = as_json(invoke(services, "models", "lineage", "models/fraud/versions/2", "-o", "json"))
    assert lineage["model_version"]["name"] == "models/fraud/versions/2"
    assert lineage["training_job"] is None

    deleted = invoke(services, "models", "alias", "delete", alias, "-o", "json")
    assert deleted.exit_code == 0, deleted.output
    assert as_json(invoke(services, "models", "alias", "list", "fraud", "-o", "json")) == []
