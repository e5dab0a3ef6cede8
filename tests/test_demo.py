"""``make demo`` end to end: ``demo/lifecycle.py`` as a user runs it, on a fresh state directory.

The demo starts the five services itself (here on free ports, its state under
``tmp_path``), walks the lifecycle (upload, profile, recipe, DDP training, alias, deploy,
predictions through the SDK and plain tritonclient, latency and traces, a second run,
canary, promote, rollback, feedback, accuracy, drift) and stops the stack. The test checks
the exit status, the lines a user reads at each step, the per-step timings it writes for
``bench/lifecycle``, and that nothing is left running.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from ferry_sdk import stack
from ferry_sdk.spawn import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lifecycle")]

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = [
    "start",
    "ingest",
    "train",
    "alias",
    "deploy",
    "predict",
    "monitor",
    "retrain",
    "canary",
    "promote",
    "rollback",
    "feedback",
    "drift",
    "stop",
]


@pytest.mark.timeout(900)
def test_the_demo_walks_the_whole_lifecycle_and_stops_the_stack(tmp_path: pathlib.Path) -> None:
    env = {
        **os.environ,
        "FERRY_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "240",  # rich wraps at 80 columns without a terminal
        **{f"FERRY_{service.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for service in stack.SERVICES},
    }
    env.pop("OTEL_TRACES_EXPORTER", None)  # the demo shows monitor's view of every service's spans
    env.pop("OTEL_SDK_DISABLED", None)
    timings = tmp_path / "timings.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "lifecycle.py"), "--timings", str(timings)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for line in (
        "datasets/wine/versions/1: 178 rows, 15 columns",
        "(content-addressed: no new version)",
        "splits train=",
        "2 CPU devices, strategy ddp",
        "succeeded -> models/wine-cultivar/versions/1",
        "lineage: job trainingJobs/wine-mlp-ddp-v1, data datasets/wine-clean/versions/1 (split 'train')",
        "production -> v1",
        "a stale compare-and-set is refused: ABORTED",
        "deployments/wine-cultivar created",
        "tritonclient.grpc.InferenceServerClient(",
        "(6/6 agree with the SDK)",
        "spans from every service reached monitor",
        "CreateDeployment across ferry-registry, ferry-serve",
        "succeeded -> models/wine-cultivar/versions/2",
        "canary v2 at 20%",
        "SetAlias(production, v2, expected_version=1)",
        "RollbackAlias(production) -> v1",
        "RecordFeedback: ground truth for",
        "the ground truth agrees with the rollback: v1 is the better model",
        "shifted features flagged: ",
        "stack stopped",
    ):
        assert line in output, f"{line!r} missing from the demo's output:\n{output[-6000:]}"
    assert "shifted features flagged: 0 of" not in output, output[-3000:]

    recorded = json.loads(timings.read_text())
    assert recorded["exit_code"] == 0
    assert [step["step"] for step in recorded["steps"]] == STEPS
    assert all(step["ok"] and step["seconds"] >= 0 for step in recorded["steps"])
    assert recorded["total_seconds"] >= sum(step["seconds"] for step in recorded["steps"]) * 0.99

    left = [s for s in stack.status({**env}) if s.pid is not None or s.health != "DOWN"]
    assert not left, f"still running after the demo: {left}"
