"""Ingest CPU-seconds per 100 MB of CSV, with and without a free-text column (issue 13).

Generates issue 13's table (about 200 MB, 10 columns: numbers, low-cardinality strings,
nulls, and a free-text ``note`` column with mostly distinct values) and the same table
without ``note``, starts ``ferry-ingest`` on a local object store (through
``ferry_sdk.spawn_and_wait``) and uploads each with ``IngestClient.upload_dataset``,
alternating the two files. Reported: the ingest process's user+sys CPU-seconds per
upload and per 100 MB of source (CPU-seconds move far less with the machine's load than
wall time does), and the wall time.

    .venv/bin/python bench/ingest/bench_ingest_cpu.py [--size-mb 200] [--repeat 3] [--py-spy DIR]

``--py-spy DIR`` also records the ingest process with py-spy during the first upload of
each file (``DIR/<table>.txt``, raw collapsed stacks) and prints the top functions.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ferry_sdk import IngestClient, spawn_and_wait

BIN = pathlib.Path(sys.executable).parent
WORDS = [
    "order",
    "delivered",
    "late",
    "customer",
    "refund",
    "asked",
    "package",
    "damaged",
    "driver",
    "called",
    "twice",
    "left",
    "at",
    "door",
    "wrong",
    "size",
    "exchange",
    "requested",
    "great",
    "service",
    "will",
    "buy",
    "again",
    "missing",
    "item",
    "box",
    "opened",
    "support",
    "ticket",
    "escalated",
    "invoice",
    "address",
    "changed",
    "gift",
    "wrap",
    "note",
    "fragile",
    "weekend",
    "delivery",
]


def _block(rng: np.random.Generator, start: int, rows: int) -> pa.Table:
    def nullable(values: np.ndarray, share: float) -> pa.Array:
        return pa.array(values, mask=rng.random(rows) < share)

    words = [pa.array(rng.choice(WORDS, rows)) for _ in range(3)]
    number = pc.cast(pa.array(rng.integers(0, 10**8, rows)), pa.string())
    note = pc.binary_join_element_wise(*words, number, " ")
    note = pc.if_else(pa.array(rng.random(rows) < 0.03), pa.scalar(None, pa.string()), note)
    return pa.table(
        {
            "id": np.arange(start, start + rows),
            "amount": nullable(rng.exponential(50, rows).round(2), 0.02),
            "score": nullable(rng.normal(0, 1, rows).round(5), 0.05),
            "quantity": rng.integers(1, 20, rows),
            "ratio": rng.uniform(0, 1, rows).round(4),
            "kind": pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], rows)),
            "city": nullable(rng.choice(["Lyon", "Oslo", "Lima", "Pune", "Kyiv", "Cork", "Bonn", "Nara"], rows), 0.1),
            "status": pa.array(rng.choice(["new", "paid", "shipped", "returned"], rows, p=[0.1, 0.3, 0.5, 0.1])),
            "flag": rng.random(rows) > 0.3,
            "note": note,
        }
    )


def generate(directory: pathlib.Path, rows: int) -> tuple[pathlib.Path, pathlib.Path]:
    """``with_note.csv`` (10 columns) and ``without_note.csv`` (the same rows, 9 columns)."""
    rng = np.random.default_rng(13)
    full, narrow = directory / "with_note.csv", directory / "without_note.csv"
    block = 200_000
    schema = _block(rng, 0, 1).schema
    with (
        pacsv.CSVWriter(full, schema) as a,
        pacsv.CSVWriter(narrow, schema.remove(schema.get_field_index("note"))) as b,
    ):
        for start in range(0, rows, block):
            table = _block(rng, start, min(block, rows - start))
            a.write_table(table)
            b.write_table(table.drop_columns(["note"]))
    return full, narrow


def _top_functions(raw: pathlib.Path, limit: int = 25) -> list[str]:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    self_samples: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")" for f in stack.split(";")
        ]
        frames = frames[1:] if frames and frames[0].startswith("process") else frames
        if not frames:
            continue
        total += count
        self_samples[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples (active threads only)", "self %  incl %  function"]
    for name, count in self_samples.most_common(limit):
        lines.append(f"{100 * count / total:6.1f}  {100 * inclusive[name] / total:6.1f}  {name}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_370_000, help="rows (default 2,370,000: about 200 MB)")
    parser.add_argument("--repeat", type=int, default=3, help="uploads per file; the median is reported")
    parser.add_argument("--py-spy", type=pathlib.Path, default=None, help="record the first upload of each file here")
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-ingest-cpu-"))
    try:
        print(f"generating {args.rows:,} rows ...", flush=True)
        files = dict(zip(("with note", "without note"), generate(work, args.rows), strict=True))
        env = {
            "FERRY_STATE_DIR": str(work / "state"),
            "FERRY_OBJECT_STORE_URL": (work / "objects").as_uri() + "/",
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_LOG_LEVEL": "warning",
        }
        (work / "objects").mkdir()
        with spawn_and_wait("ingest", env=env, log_path=work / "ingest.log") as ingest:
            client = IngestClient(ingest.address, transfer_timeout=3600)
            process = psutil.Process(ingest.pid)
            cpu: dict[str, list[float]] = {name: [] for name in files}
            wall: dict[str, list[float]] = {name: [] for name in files}
            for attempt in range(args.repeat):
                for name, path in files.items():
                    spy = None
                    if args.py_spy is not None and attempt == 0:
                        args.py_spy.mkdir(parents=True, exist_ok=True)
                        raw = args.py_spy / f"{name.replace(' ', '_')}.txt"
                        spy = subprocess.Popen(
                            [
                                str(BIN / "py-spy"),
                                "record",
                                "--pid",
                                str(ingest.pid),
                                "--format",
                                "raw",
                                "--rate",
                                "200",
                                "--output",
                                str(raw),
                                "--nonblocking",
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                        time.sleep(1.0)
                    times = process.cpu_times()
                    before, started = times.user + times.system, time.perf_counter()
                    version = client.upload_dataset(f"cpu-{uuid.uuid4().hex[:12]}", path, format="csv")
                    elapsed = time.perf_counter() - started
                    times = process.cpu_times()
                    cpu[name].append(times.user + times.system - before)
                    wall[name].append(elapsed)
                    assert version.row_count == args.rows
                    if spy is not None:
                        spy.send_signal(2)
                        spy.wait(timeout=60)
                        print(f"--- py-spy, {name}:", *_top_functions(raw), sep="\n", flush=True)
            print(f"\n| table | MB | ingest CPU-s per upload | CPU-s per 100 MB | wall s | (median of {args.repeat}) |")
            print("|---|---|---|---|---|---|")
            for name, path in files.items():
                size = path.stat().st_size / 1e6
                median = statistics.median(cpu[name])
                print(
                    f"| {name} | {size:.1f} | {median:.2f} ({min(cpu[name]):.2f}-{max(cpu[name]):.2f}) |"
                    f" {100 * median / size:.2f} | {statistics.median(wall[name]):.2f} | |"
                )
            print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
