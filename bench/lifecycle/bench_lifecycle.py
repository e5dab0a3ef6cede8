"""The lifecycle on this machine: wall time of each ``make demo`` step, and what a user types.

Two measurements, each on a fresh state directory and free ports (nothing shared with a
stack already running):

1. **demo**: ``demo/lifecycle.py --timings FILE`` as ``make demo`` runs it (the five services
   started, the whole lifecycle walked, the stack stopped), then a second run on the same
   state (the dataset, jobs and versions come back by content hash and ``request_id``). The
   table gives each step's wall time, its share of the fresh run, and the fresh run's total
   against the demo's budget: ``make demo`` must finish in under 10 minutes on a fresh clone,
   ``make install`` included (about 4 minutes), so the demo itself gets 6 minutes.
2. **cli**: the shortest ``ferry`` session from a CSV file to a canaried, monitored
   deployment, run for real command by command (``.venv/bin/ferry``): how many commands and
   configuration files it takes, and each command's wall time. ``ferry predict`` sends the
   traffic a monitored deployment needs (an application's job, not set-up: listed, not
   counted); ``ferry down`` ends it.

    .venv/bin/python bench/lifecycle/bench_lifecycle.py [--skip-demo] [--skip-cli] [--no-rerun]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ferry_sdk import stack
from ferry_sdk.spawn import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "lifecycle.py"
FERRY = pathlib.Path(sys.executable).parent / "ferry"
DEMO_BUDGET_SECONDS = 360.0  # 10 minutes for install + demo, install ~4 minutes


def fresh_environment(state: pathlib.Path) -> dict[str, str]:
    env = {**os.environ, "FERRY_STATE_DIR": str(state), "COLUMNS": "160"}
    env.update({f"FERRY_{service.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for service in stack.SERVICES})
    return env


def run_demo(env: dict[str, str], timings: pathlib.Path, log: pathlib.Path) -> dict[str, Any]:
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(
            [sys.executable, str(DEMO), "--timings", str(timings)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    wall = time.perf_counter() - started
    if code != 0 or not timings.exists():
        sys.exit(f"demo failed (exit {code}); the end of its output:\n{log.read_text()[-5000:]}")
    data: dict[str, Any] = json.loads(timings.read_text())
    data["process_seconds"] = wall  # interpreter start and imports included
    return data


def demo_table(fresh: dict[str, Any], rerun: dict[str, Any] | None) -> None:
    again = {step["step"]: step["seconds"] for step in rerun["steps"]} if rerun else {}
    total = fresh["process_seconds"]
    print("\n## make demo: wall time of each step (fresh state; then a second run on the same state)\n")
    print(f"| {'step':<9} | {'what':<74} | {'fresh s':>8} | {'share':>6} | {'rerun s':>8} |")
    print(f"|{'-' * 11}|{'-' * 76}|{'-' * 10}|{'-' * 8}|{'-' * 10}|")
    for step in fresh["steps"]:
        rerun_s = f"{again[step['step']]:.1f}" if step["step"] in again else "-"
        print(
            f"| {step['step']:<9} | {step['title'][:74]:<74} | {step['seconds']:>8.1f} | "
            f"{step['seconds'] / total:>6.1%} | {rerun_s:>8} |"
        )
    rerun_total = f"{rerun['process_seconds']:.1f}" if rerun else "-"
    what = "the process, interpreter start included"
    print(f"| {'total':<9} | {what:<74} | {total:>8.1f} | {1:>6.0%} | {rerun_total:>8} |")
    print(
        f"\nfresh run: {total:.1f} s = {total / DEMO_BUDGET_SECONDS:.2f} of the demo's budget "
        f"({DEMO_BUDGET_SECONDS:.0f} s: 10 minutes with make install's ~4)"
    )


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    why: str
    counted: bool = True


def cli_session(data: pathlib.Path) -> list[Command]:
    """The shortest session from ``wine.csv`` to a canaried, monitored deployment (defaults otherwise)."""
    common = ("--dataset", "datasets/wine/versions/1", "--target", "target", "--register-model", "models/wine")
    return [
        Command(("up",), "start the five services"),
        Command(
            (
                "datasets",
                "upload",
                str(data / "wine.csv"),
                "--name",
                "wine",
                "--split",
                "train=0.7,validation=0.15,test=0.15",
                "--stratify",
                "target",
            ),
            "upload the CSV; profiled; split for training",
        ),
        Command(
            ("train", "run", *common, "--devices", "2", "--strategy", "ddp", "--epochs", "15", "--watch"),
            "train on 2 CPU devices (DDP), registered as version 1",
        ),
        Command(("models", "alias", "set", "models/wine/aliases/production", "1"), "release: production -> 1"),
        Command(("deploy", "create", "wine", "--model", "models/wine", "--alias", "production"), "deploy production"),
        Command(
            ("train", "run", *common, "--epochs", "3", "--learning-rate", "0.0003", "--watch"),
            "a second model: version 2",
        ),
        Command(("deploy", "update", "wine", "--canary", "2", "--percent", "20"), "canary: 20% to version 2"),
        Command(("predict", "wine", "--input", str(data / "rows.csv")), "traffic (an application's job)", False),
        Command(("monitor", "latency", "--deployment", "wine"), "latency percentiles of the deployment"),
        Command(("down",), "stop the stack", False),
    ]


def run_cli(workdir: pathlib.Path) -> None:
    from sklearn.datasets import load_wine

    data = workdir / "data"
    data.mkdir()
    frame = load_wine(as_frame=True).frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    frame.to_csv(data / "wine.csv", index=False)
    frame.drop(columns=["target"]).sample(20, random_state=0).to_csv(data / "rows.csv", index=False)
    env = fresh_environment(workdir / "cli-state")
    commands = cli_session(data)
    results: list[tuple[Command, float, int]] = []
    try:
        for command in commands:
            started = time.perf_counter()
            done = subprocess.run(
                [str(FERRY), *command.argv], cwd=data, env=env, capture_output=True, text=True, check=False
            )
            results.append((command, time.perf_counter() - started, done.returncode))
            if done.returncode != 0:
                output = done.stdout[-3000:] + done.stderr[-3000:]
                print(f"\nferry {shlex.join(command.argv)} exited {done.returncode}:\n{output}")
                break
    finally:
        stack.stop_many(stack.SERVICES, env)
    counted = [command for command in commands if command.counted]
    print("\n## From a CSV to a canaried, monitored deployment with the ferry CLI (run for real)\n")
    print(f"| {'#':>2} | {'command':<150} | {'s':>6} | {'exit':>4} |")
    print(f"|{'-' * 4}|{'-' * 152}|{'-' * 8}|{'-' * 6}|")
    number = 0
    for command, seconds, code in results:
        number += command.counted
        label = f"{number:>2}" if command.counted else " -"
        text = shlex.join(["ferry", *command.argv]).replace(str(data) + "/", "")
        print(f"| {label} | {text:<150} | {seconds:>6.1f} | {code:>4} |")
    ok = len(results) == len(commands) and all(code == 0 for _, _, code in results)
    print(
        f"\ncommands a user types: {len(counted)} (plus `ferry predict` for traffic and `ferry down`); "
        f"configuration files: 0 (defaults suffice; the split is a flag of `datasets upload`); "
        f"session {'completed' if ok else 'FAILED'} in {sum(s for _, s, _ in results):.1f} s"
    )
    if not ok:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true", help="only the CLI session")
    parser.add_argument("--skip-cli", action="store_true", help="only the demo's timings")
    parser.add_argument("--no-rerun", action="store_true", help="no second demo run on the same state")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="ferry-bench-lifecycle-") as tmp:
        workdir = pathlib.Path(tmp)
        if not args.skip_demo:
            env = fresh_environment(workdir / "demo-state")
            fresh = run_demo(env, workdir / "fresh.json", workdir / "fresh.log")
            rerun = None if args.no_rerun else run_demo(env, workdir / "rerun.json", workdir / "rerun.log")
            demo_table(fresh, rerun)
        if not args.skip_cli:
            run_cli(workdir)


if __name__ == "__main__":
    main()
