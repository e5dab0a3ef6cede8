"""Wall time of a Ferry training job against the same training as a plain Lightning script.

Starts ``ferry-registry``, ``ferry-ingest`` and ``ferry-train`` as subprocesses (local
object store and SQLite in a temporary state directory, through
``ferry_sdk.spawn_and_wait``), uploads a generated tabular dataset (numeric columns with
nulls, a string categorical, three classes) and splits it 80/20 with an ingest recipe.
The two splits are then read back once and written as local Parquet files. Then, in the
same run and alternating round by round, for 1 device (and 2 devices, DDP over gloo):

- **plain**: ``python bench_train.py --plain ...`` as a subprocess, timed from launch to
  exit: reads the two local Parquet files, fits ``ferry_train.pipeline``'s pre-processing
  and MLP, trains with the same Lightning ``fit`` (a checkpoint per epoch, as any
  resumable script would), exports nothing. This is the baseline.
- **ferry**: ``CreateTrainingJob`` then polling ``GetTrainingJob`` until SUCCEEDED, timed
  from the Create call to SUCCEEDED: queueing, the worker process start, reading the
  splits through ingest, training, a checkpoint upload per epoch, ONNX export and its
  check against PyTorch, upload and registration in the registry.

Prints the median wall time per case, samples per second (training rows x epochs / wall
time) and the ratio Ferry/plain for the same devices (target <= 1.3).

    .venv/bin/python bench/train/bench_train.py [--rows 100000] [--epochs 2] [--rounds 3] [--devices 1,2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

BENCH_SEED = 11
HIDDEN_UNITS = (64, 32)
LEARNING_RATE = 0.003
TRAIN_SEED = 5
TARGET_RATIO = 1.3


def generate(rows: int) -> pd.DataFrame:
    """A classification table: 8 numeric features (some nulls), one string categorical, 3 classes."""
    rng = np.random.default_rng(BENCH_SEED)
    numeric = rng.normal(0.0, 1.0, (rows, 8))
    kind = rng.choice(["alpha", "beta", "gamma", "delta"], rows)
    score = numeric[:, 0] + 0.5 * numeric[:, 1] - numeric[:, 2] * numeric[:, 3] + (kind == "beta") * 0.8
    label = np.where(score < -0.5, "low", np.where(score < 0.7, "mid", "high"))
    frame = pd.DataFrame({f"x{i}": numeric[:, i].round(5) for i in range(8)})
    frame.loc[rng.random(rows) < 0.02, "x4"] = np.nan
    frame["kind"] = kind
    frame.loc[rng.random(rows) < 0.01, "kind"] = None
    frame["label"] = label
    return frame


def plain_run(directory: pathlib.Path, epochs: int, batch_size: int, devices: int) -> None:
    """The baseline: what a user's own Lightning script does with the same data and settings."""
    # Imported here: the parent process never needs torch.
    import pytorch_lightning as pl

    from ferry_train.pipeline import FitConfig, Task, TrainerResources, build_mlp, fit, fit_preprocessor

    train_df = pd.read_parquet(directory / "train.parquet")
    val_df = pd.read_parquet(directory / "validation.parquet")
    preprocessor = fit_preprocessor(train_df, target="label", features=[], task=Task.CLASSIFICATION)
    x_train, y_train = preprocessor.encode_split(train_df, split_field="train")
    x_val, y_val = preprocessor.encode_split(val_df, split_field="validation")
    pl.seed_everything(TRAIN_SEED, workers=True, verbose=False)
    module = build_mlp(preprocessor, y_train, hidden_units=HIDDEN_UNITS, learning_rate=LEARNING_RATE)
    config = FitConfig(
        max_epochs=epochs,
        batch_size=batch_size,
        seed=TRAIN_SEED,
        checkpoint_dir=pathlib.Path(tempfile.mkdtemp(prefix="plain-ckpt-", dir=directory)),
        resources=TrainerResources(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto"),
    )
    result = fit(module, (x_train, y_train), (x_val, y_val), config)
    if result.epochs_completed != epochs:
        raise SystemExit(f"plain run finished {result.epochs_completed} of {epochs} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="generated rows (default 100,000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per batch (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds; medians reported (default 3)")
    parser.add_argument("--devices", default="1,2", help="device counts to measure (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="50,000 rows, 1 epoch, 1 round")
    parser.add_argument("--plain", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.rounds = 50_000, 1, 1
    devices_list = [int(d) for d in args.devices.split(",")]
    if args.plain:
        plain_run(pathlib.Path(args.plain), args.epochs, args.batch_size, int(args.devices))
        return

    import grpc

    from ferry.train.v1 import train_pb2 as pb
    from ferry.train.v1 import train_pb2_grpc
    from ferry_sdk import IngestClient
    from ferry_sdk.spawn import ServiceProcess, free_port, spawn_and_wait, stop_all

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-train-"))
    started: dict[str, ServiceProcess] = {}
    try:
        addresses = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "ingest", "train")}
        common = {f"FERRY_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
        common |= {
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
            "FERRY_TRAIN_POLL_MS": "100",
        }
        for name in ("registry", "ingest", "train"):
            env = {**common, "FERRY_STATE_DIR": str(work / name)}
            started[name] = spawn_and_wait(name, env=env, log_path=work / f"{name}.log", timeout=120)

        print(f"generating {args.rows:,} rows, uploading and splitting them through ferry-ingest ...", flush=True)
        frame = generate(args.rows)
        recipe = {
            "steps": [
                {
                    "split": {
                        "fractions": [{"name": "train", "fraction": 0.8}, {"name": "validation", "fraction": 0.2}],
                        "seed": 7,
                    }
                }
            ]
        }
        with IngestClient(started["ingest"].address) as ingest:
            raw = ingest.upload_dataset("bench", frame)
            split = ingest.transform_dataset(raw.name, "bench-split", recipe)
            # The plain script reads the very same split rows, from local files.
            train_rows = 0
            for name in ("train", "validation"):
                part = ingest.read_dataset_frame(split.name, split=name)
                part.to_parquet(work / f"{name}.parquet", index=False)
                train_rows = len(part) if name == "train" else train_rows

        channel = grpc.insecure_channel(started["train"].address)
        train = train_pb2_grpc.TrainServiceStub(channel)
        counter = iter(range(1_000_000))

        def ferry_run(devices: int) -> float:
            job_id = f"bench-{next(counter)}"
            job = pb.TrainingJob(
                dataset_version=split.name,
                training_split="train",
                validation_split="validation",
                target="label",
                task=pb.TASK_CLASSIFICATION,
                model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=list(HIDDEN_UNITS), dropout=0.0)),
                hyperparameters=pb.Hyperparameters(
                    max_epochs=args.epochs, batch_size=args.batch_size, learning_rate=LEARNING_RATE, seed=TRAIN_SEED
                ),
                resources=pb.Resources(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto"),
                register_model="models/bench",
            )
            started_at = time.perf_counter()
            created = train.CreateTrainingJob(
                pb.CreateTrainingJobRequest(training_job_id=job_id, training_job=job, request_id=job_id), timeout=30
            )
            while True:
                got = train.GetTrainingJob(pb.GetTrainingJobRequest(name=created.name), timeout=30)
                if got.state == pb.TrainingJob.STATE_SUCCEEDED:
                    return time.perf_counter() - started_at
                if got.state in (pb.TrainingJob.STATE_FAILED, pb.TrainingJob.STATE_CANCELLED):
                    raise RuntimeError(f"{created.name} ended {pb.TrainingJob.State.Name(got.state)}: {got.error}")
                time.sleep(0.05)

        def plain(devices: int) -> float:
            command = [
                sys.executable,
                str(pathlib.Path(__file__).resolve()),
                "--plain",
                str(work),
                "--epochs",
                str(args.epochs),
                "--batch-size",
                str(args.batch_size),
                "--devices",
                str(devices),
            ]
            started_at = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - started_at
            if done.returncode != 0:
                raise RuntimeError(f"plain run failed ({done.returncode}):\n{done.stderr[-3000:]}")
            return elapsed

        times: dict[tuple[str, int], list[float]] = {}
        failures: dict[int, str] = {}
        for round_ in range(args.rounds):
            for devices in devices_list:
                if devices in failures:
                    continue
                # Alternate which side goes first, so neither always runs on a warmer page cache.
                order = [("plain", plain), ("ferry", ferry_run)]
                for case, run in order if round_ % 2 == 0 else order[::-1]:
                    try:
                        seconds = run(devices)
                    except RuntimeError as error:
                        failures[devices] = f"{case}: {error}"
                        break
                    times.setdefault((case, devices), []).append(seconds)
                    print(f"  round {round_ + 1}: {case} devices={devices}: {seconds:.2f} s", flush=True)

        samples = train_rows * args.epochs
        print()
        print(f"| {'case':30s} | devices |  wall s | samples/s | ferry/plain | target      |")
        print(f"|{'-' * 32}|---------|---------|-----------|-------------|-------------|")
        missed = False
        for devices in devices_list:
            if devices in failures:
                print(f"| {'(failed)':30s} | {devices:7d} |         |           |             |             |")
                continue
            base = statistics.median(times[("plain", devices)])
            ours = statistics.median(times[("ferry", devices)])
            ratio = ours / base
            missed |= ratio > TARGET_RATIO
            verdict = f"<= {TARGET_RATIO} {'PASS' if ratio <= TARGET_RATIO else 'MISS'}"
            print(
                f"| {'plain Lightning script':30s} | {devices:7d} | {base:7.2f} | {samples / base:9,.0f} |"
                "  base       |             |"
            )
            print(
                f"| {'Ferry CreateTrainingJob':30s} | {devices:7d} | {ours:7.2f} | {samples / ours:9,.0f} |"
                f" {ratio:7.2f}x    | {verdict:11s} |"
            )
        print()
        print(
            f"{args.rows:,} rows ({train_rows:,} training), {args.epochs} epochs, batch {args.batch_size},"
            f" MLP {list(HIDDEN_UNITS)}, CPU; median of {args.rounds} alternated round(s); {os.cpu_count()} CPUs"
        )
        for devices, reason in failures.items():
            print(f"devices={devices} failed: {reason.splitlines()[0] if reason else ''}")
            print(reason[-2000:])
        if missed or failures:
            sys.exit(1)
    finally:
        stop_all(started.values())
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
