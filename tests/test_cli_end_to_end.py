"""The README's session through the installed `ferry` command, against real processes.

    ferry up
    ferry datasets upload churn.csv --name churn
    ferry train run --dataset datasets/churn/versions/1 --target churned --register-model models/churn --watch
    ferry models alias set models/churn/aliases/production 1
    ferry deploy create churn --model models/churn --alias production
    ferry predict churn@production --input rows.csv
    ferry monitor latency --deployment churn
    ferry down

This is the issue's session word for word: the plain upload has no splits, so `train run`
splits it 80/20 (stratified by the target) into version 2 of the same dataset first.
Every step is a subprocess of `.venv/bin/ferry` with `--output json`, its stdout parsed;
the five services are the processes `ferry up` starts (state in ``tmp_path``, free ports),
tracing on so serve's spans reach monitor.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ferry_common.pytest_plugin import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

FERRY = str(pathlib.Path(sys.executable).parent / "ferry")
SERVICES = ("registry", "ingest", "train", "serve", "monitor")


def churn_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A churn-like table: two numeric columns, a categorical one, a 0/1 target that depends on them."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 20, rows).round(2)
    contract = rng.choice(["monthly", "yearly", "two-year"], rows)
    logit = -0.05 * tenure + 0.03 * (charges - 70) + np.where(contract == "monthly", 1.5, -0.5)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"tenure": tenure, "monthly_charges": charges, "contract": contract, "churned": churned})


class Ferry:
    """Runs `ferry ... --output json` with the test's environment; returns the parsed stdout."""

    def __init__(self, env: dict[str, str], cwd: pathlib.Path) -> None:
        self.env = env
        self.cwd = cwd

    def run(self, *args: str, timeout: float = 180, expect: int = 0) -> Any:
        result = subprocess.run(
            [FERRY, *args, "--output", "json"],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == expect, (
            f"ferry {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return json.loads(result.stdout)


def test_the_readme_session_through_the_cli(tmp_path: pathlib.Path) -> None:
    env = {
        **os.environ,
        "FERRY_STATE_DIR": str(tmp_path / "state"),
        **{f"FERRY_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for name in SERVICES},
    }
    for key in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "FERRY_OUTPUT"):
        env.pop(key, None)
    frame = churn_frame()
    frame.to_csv(tmp_path / "churn.csv", index=False)
    frame.drop(columns=["churned"]).head(5).to_csv(tmp_path / "rows.csv", index=False)
    ferry = Ferry(env, tmp_path)
    try:
        started = time.monotonic()
        up = ferry.run("up", timeout=240)
        assert [s["health"] for s in up["services"]] == ["SERVING"] * 5

        version = ferry.run("datasets", "upload", "churn.csv", "--name", "churn")
        assert version["name"] == "datasets/churn/versions/1"
        assert version["row_count"] == "400"
        assert not version.get("splits")

        job = ferry.run(
            "train", "run", "--dataset", "datasets/churn/versions/1", "--target", "churned",
            "--register-model", "models/churn", "--epochs", "3", "--batch-size", "32", "--watch",
            timeout=420,
        )  # fmt: skip
        assert job["state"] == "STATE_SUCCEEDED"
        assert job["model_version"] == "models/churn/versions/1"
        assert job["dataset_version"] == "datasets/churn/versions/2"  # the automatic split
        split = ferry.run("datasets", "show", "datasets/churn/versions/2")
        assert {s["name"]: s["row_count"] for s in split["splits"]} == {"train": "320", "validation": "80"}
        assert 0.0 <= job["metrics"]["val_accuracy"] <= 1.0

        alias = ferry.run("models", "alias", "set", "models/churn/aliases/production", "1")
        assert alias["name"] == "models/churn/aliases/production"
        assert alias["version"] == "1"

        lineage = ferry.run("models", "lineage", "models/churn/aliases/production")
        assert lineage["training_job"]["name"] == job["name"]
        assert [d["name"] for d in lineage["dataset_versions"]] == [
            "datasets/churn/versions/2",
            "datasets/churn/versions/1",
        ]

        deployment = ferry.run("deploy", "create", "churn", "--model", "models/churn", "--alias", "production",
                               timeout=300)  # fmt: skip
        assert deployment["state"] == "STATE_READY"

        answer = ferry.run("predict", "churn@production", "--input", "rows.csv", timeout=120)
        assert answer["model_version"] == 1
        assert len(answer["predictions"]) == 5
        assert all(row["label"] in ("0", "1") for row in answer["predictions"])

        # serve's spans reach monitor through OTLP (batched every 0.5 s): poll for a while.
        deadline = time.monotonic() + 90
        latency = ferry.run("monitor", "latency", "--deployment", "churn")
        while int(latency.get("count", "0")) == 0 and time.monotonic() < deadline:
            time.sleep(1)
            latency = ferry.run("monitor", "latency", "--deployment", "churn")
        assert int(latency["count"]) >= 1, latency
        assert latency["p99_ms"] > 0
        print(f"session up..monitor: {time.monotonic() - started:.1f} s")
    finally:
        down = subprocess.run(
            [FERRY, "down", "--output", "json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
        )
    assert down.returncode == 0, down.stderr
    assert [s["was_running"] for s in json.loads(down.stdout)["stopped"]] == [True] * 5
