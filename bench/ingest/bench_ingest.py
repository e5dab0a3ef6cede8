"""Upload throughput of ferry-ingest against a raw ``minio`` put of the same bytes.

Starts ``moto_server`` (S3 on loopback) and ``ferry-ingest`` (S3 backend, through
``ferry_sdk.spawn_and_wait``) as subprocesses, generates a CSV of ``--size-mb`` and a Parquet file of the same rows,
then, in the same run and against the same endpoint, measures:

- raw ``Minio.put_object`` of each file (the baseline: bytes to the bucket, nothing else);
- ``IngestClient.upload_dataset`` of each file through ferry-ingest (4 MiB gRPC chunks), which also
  hashes, parses (CSV) or validates (Parquet), profiles, writes canonical Parquet
  and the profile, and commits the version.

Prints MB/s (source megabytes per second of wall time), the ratio to the raw put of
the same file, and the ingest process's peak RSS. Targets: ratio >= 0.5 for CSV,
>= 0.85 for Parquet.

    .venv/bin/python bench/ingest/bench_ingest.py [--size-mb 200] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from minio import Minio

from ferry_sdk import IngestClient, ServiceProcess, spawn_and_wait
from ferry_sdk.spawn import free_port, wait_port

MIB = 1024 * 1024
CHUNK = 4 * MIB
PART = 16 * MIB  # ferry_common.objectstore.PART_BYTES
BIN = pathlib.Path(sys.executable).parent


def generate(directory: pathlib.Path, size_mb: int) -> tuple[pathlib.Path, pathlib.Path]:
    """A CSV of about ``size_mb`` MB (numeric and categorical columns) and the same rows as Parquet."""
    rng = np.random.default_rng(42)
    csv_path, parquet_path = directory / "data.csv", directory / "data.parquet"
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("x1", pa.float64()),
            ("x2", pa.float64()),
            ("x3", pa.float64()),
            ("n", pa.int64()),
            ("kind", pa.string()),
            ("flag", pa.bool_()),
        ]
    )
    rows, block = 0, 200_000
    with pacsv.CSVWriter(csv_path, schema) as csv_writer, pq.ParquetWriter(parquet_path, schema) as parquet_writer:
        while csv_path.stat().st_size < size_mb * 1_000_000:
            table = pa.table(
                {
                    "id": np.arange(rows, rows + block),
                    "x1": rng.normal(0, 1, block).round(6),
                    "x2": rng.exponential(10, block).round(4),
                    "x3": rng.uniform(-1000, 1000, block).round(3),
                    "n": rng.integers(0, 1000, block),
                    "kind": pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], block)),
                    "flag": rng.random(block) > 0.3,
                },
                schema=schema,
            )
            csv_writer.write_table(table)
            parquet_writer.write_table(table)
            rows += block
    return csv_path, parquet_path


class PeakRss:
    """Samples a process's resident memory in the background."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Result:
    case: str
    size_mb: float
    seconds: list[float]
    peak_rss_mb: float = 0.0

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def mb_s(self) -> float:
        return self.size_mb / self.median


def timed(repeat: int, run: Callable[[int], None]) -> list[float]:
    times = []
    for attempt in range(repeat):
        started = time.perf_counter()
        run(attempt)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="CSV size in MB (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="a 32 MB file, one run per case")
    args = parser.parse_args()
    size_mb, repeat = (32, 1) if args.quick else (args.size_mb, args.repeat)

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    moto: subprocess.Popen[bytes] | None = None
    ingest: ServiceProcess | None = None
    try:
        print(f"generating {size_mb} MB of CSV and the same rows as Parquet ...", flush=True)
        csv_path, parquet_path = generate(work, size_mb)

        s3_port = free_port()
        moto = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(s3_port, process=moto, timeout=60)
        endpoint = f"127.0.0.1:{s3_port}"
        client = Minio(endpoint, access_key="bench", secret_key="bench", secure=False)
        bucket = "ferry-bench"
        client.make_bucket(bucket)

        env = {
            "FERRY_STATE_DIR": str(work / "state"),
            "FERRY_OBJECT_STORE_URL": f"s3://{bucket}/ferry",
            "FERRY_S3_ENDPOINT": endpoint,
            "FERRY_S3_ACCESS_KEY": "bench",
            "FERRY_S3_SECRET_KEY": "bench",
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
        }
        ingest = spawn_and_wait("ingest", env=env, log_path=work / "ingest.log")
        uploader = IngestClient(ingest.address, transfer_timeout=3600)

        def raw_put(path: pathlib.Path, part_size: int) -> Callable[[int], None]:
            def run(attempt: int) -> None:
                key = f"raw/{uuid.uuid4().hex}"
                with path.open("rb") as source:
                    client.put_object(bucket, key, source, path.stat().st_size, part_size=part_size)
                client.remove_object(bucket, key)

            return run

        def upload(path: pathlib.Path, fmt: str) -> Callable[[int], None]:
            def run(attempt: int) -> None:
                dataset = f"bench-{uuid.uuid4().hex[:12]}"
                version = uploader.upload_dataset(dataset, path, format=fmt, chunk_size=CHUNK)
                assert version.row_count > 0

            return run

        def cpu_seconds(pid: int) -> float:
            times = psutil.Process(pid).cpu_times()
            return float(times.user + times.system)

        cpu_notes: list[str] = []
        print(f"| {'case':42s} | {'MB':>7s} | {'s':>7s} | {'MB/s':>7s} | ratio | peak RSS MB |")
        print(f"|{'-' * 44}|{'-' * 9}|{'-' * 9}|{'-' * 9}|-------|-------------|")
        for label, path, fmt in (
            ("CSV", csv_path, "csv"),
            ("Parquet", parquet_path, "parquet"),
        ):
            size = path.stat().st_size / 1_000_000
            default = Result(f"raw put {label} (minio default parts)", size, timed(repeat, raw_put(path, 0)))
            same = Result(f"raw put {label} (16 MiB parts)", size, timed(repeat, raw_put(path, PART)))
            pids = {"ingest": ingest.pid, "moto": moto.pid}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            with PeakRss(ingest.pid) as rss:
                ours = Result(f"ferry-ingest UploadDataset {label}", size, timed(repeat, upload(path, fmt)))
            ours.peak_rss_mb = rss.peak / 1e6
            used = {name: (cpu_seconds(pid) - before[name]) / repeat for name, pid in pids.items()}
            cpu_notes.append(
                f"{label}: per upload, ferry-ingest used {used['ingest']:.2f} s CPU and moto {used['moto']:.2f} s"
            )
            baseline = min((default, same), key=lambda r: r.median)
            for row in (default, same, ours):
                ratio = baseline.median / row.median
                note = f"{ratio:5.2f}" if row is ours else ("  base" if row is baseline else "     ")
                rss_text = f"{row.peak_rss_mb:11.0f}" if row is ours else " " * 11
                print(
                    f"| {row.case:42s} | {row.size_mb:7.1f} | {row.median:7.2f} | {row.mb_s:7.1f} | {note} |"
                    f" {rss_text} |",
                    flush=True,
                )
        print()
        for note in cpu_notes:
            print(note)
        print(
            f"files: CSV {csv_path.stat().st_size / 1e6:.0f} MB, Parquet {parquet_path.stat().st_size / 1e6:.0f} MB;"
            f" median of {repeat} run(s); ratio = raw put time (best part size) / ferry-ingest time;"
            f" {os.cpu_count()} CPUs"
        )
    finally:
        if ingest is not None:
            ingest.stop(timeout=20)
        if moto is not None:
            moto.terminate()
            try:
                moto.wait(timeout=20)
            except subprocess.TimeoutExpired:
                moto.kill()
                moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
