"""Ferry's UploadDataset against its peers on one real S3 server (Ceph RGW), issue 13.

Starts a one-monitor, one-OSD Ceph cluster with radosgw on loopback
(``scripts/ceph-rgw.sh``; the packages: ``scripts/ensure-ceph.sh``) and ``ferry-ingest``
on its S3 backend, generates issue 13's 10-column table with a free-text column (about
200 MB of CSV, ``bench_ingest_cpu.generate``'s rows) and a numeric-only table (the same
rows' numeric columns), and in alternated rounds (the order of the paths rotates every
round) times, against the same endpoint and bucket:

- **raw put**: ``Minio.put_object`` of the CSV, 16 MiB parts (the bytes, nothing else);
- **pandas**: a fresh ``python`` process doing ``read_csv`` + ``describe()`` +
  ``to_parquet`` + ``fput_object`` of the Parquet file (16 MiB parts): what one writes by hand;
- **DVC**: ``dvc add`` + ``dvc push`` to an S3 remote on the same endpoint, in a fresh
  repository per round, with DVC from its own virtualenv (``--dvc-venv``, created with
  ``python -m venv`` + ``pip install dvc dvc-s3`` when missing);
- **Ferry**: ``IngestClient.upload_dataset`` (parse, type, profile, canonical Parquet,
  metadata commit).

Between rounds every object is deleted and RGW's garbage collector is run (memstore keeps
the OSD's objects in RAM). Reported per table and path: median wall seconds, median
CPU-seconds of the path's own processes (for Ferry: the ingest server) and per 100 MB,
and the targets as ratios: Ferry at least 2x faster than pandas, at least as fast as DVC,
at most 2.5 ingest CPU-s per 100 MB. ``--big-mb`` (default 1024) then uploads a CSV of
that size through a fresh ``ferry-ingest`` and reports its peak RSS (target: under 300 MB).

    .venv/bin/python bench/ingest/bench_ingest_peers.py [--rows 2370000] [--rounds 3] [--big-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
from minio import Minio
from minio.deleteobjects import DeleteObject

from ferry_sdk import IngestClient, spawn_and_wait
from ferry_sdk.spawn import free_port

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_ingest_cpu import _block  # the table, one generator

ROOT = pathlib.Path(__file__).resolve().parents[2]
CEPH = ROOT / "scripts" / "ceph-rgw.sh"
MIB = 1024 * 1024
PART = 16 * MIB  # ferry_common.objectstore.PART_BYTES
NUMERIC = ["id", "amount", "score", "quantity", "ratio"]
PATHS = ("raw put", "pandas", "DVC", "Ferry")
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
DEFAULT_DVC_VENV = CACHE / "ferry-bench" / "dvc-venv"

PANDAS_SCRIPT = """
import sys, pandas as pd
from minio import Minio
src, out, endpoint, access, secret, bucket, key = sys.argv[1:]
df = pd.read_csv(src)
df.describe()
df.to_parquet(out)
Minio(endpoint, access_key=access, secret_key=secret, secure=False).fput_object(
    bucket, key, out, part_size=16 * 1024 * 1024)
"""


def generate(directory: pathlib.Path, rows: int) -> dict[str, pathlib.Path]:
    """``text.csv`` (the 10 columns, free-text ``note`` included) and ``numeric.csv`` (its numeric columns)."""
    rng = np.random.default_rng(13)
    text, numeric = directory / "text.csv", directory / "numeric.csv"
    block = 200_000
    schema = _block(rng, 0, 1).schema
    with (
        pacsv.CSVWriter(text, schema) as a,
        pacsv.CSVWriter(numeric, pa.schema([schema.field(n) for n in NUMERIC])) as b,
    ):
        for start in range(0, rows, block):
            table = _block(rng, start, min(block, rows - start))
            a.write_table(table)
            b.write_table(table.select(NUMERIC))
    return {"10 columns, free text": text, "numeric only": numeric}


def generate_big(path: pathlib.Path, size_mb: int) -> None:
    rng = np.random.default_rng(7)
    schema = _block(rng, 0, 1).schema
    start = 0
    with pacsv.CSVWriter(path, schema) as writer:
        while path.stat().st_size < size_mb * 1_000_000:
            writer.write_table(_block(rng, start, 200_000))
            start += 200_000


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)


def run_child(argv: list[str], cwd: pathlib.Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run a command to completion (reaped: its CPU then counts in ``children_cpu``)."""
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{proc.stdout.decode()[-3000:]}")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ensure_dvc(venv: pathlib.Path) -> pathlib.Path:
    dvc = venv / "bin" / "dvc"
    if not dvc.exists():
        print(f"creating DVC's virtualenv in {venv} (pip install dvc dvc-s3) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "dvc", "dvc-s3"], check=True)
    version = subprocess.run([str(dvc), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"DVC {version} from {venv}", flush=True)
    return dvc


def rgw_pids(cluster: pathlib.Path) -> list[int]:
    return [int((cluster / "run" / f"{name}.pid").read_text()) for name in ("client.rgw", "osd.0")]


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def vm_hwm_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 * 1.048576
    raise RuntimeError("no VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_370_000, help="rows (default 2,370,000: about 211 MB of CSV)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds; medians are reported")
    parser.add_argument("--big-mb", type=int, default=1024, help="the peak-RSS upload's CSV size (0: skip)")
    parser.add_argument("--dvc-venv", type=pathlib.Path, default=DEFAULT_DVC_VENV, help="DVC's own virtualenv")
    parser.add_argument("--work", type=pathlib.Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()

    dvc = ensure_dvc(args.dvc_venv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-peers-", dir=args.work))
    cluster = work / "ceph"
    try:
        print(f"generating {args.rows:,} rows ...", flush=True)
        files = generate(work, args.rows)
        rgw_port = free_port()
        access, secret = "bench", uuid.uuid4().hex
        started = time.perf_counter()
        subprocess.run(
            [str(CEPH), "up", str(cluster)],
            env={
                **os.environ,
                "RGW_PORT": str(rgw_port),
                "MON_PORT": str(free_port()),
                "RGW_ACCESS_KEY": access,
                "RGW_SECRET_KEY": secret,
            },
            check=True,
            stdout=subprocess.DEVNULL,
        )
        endpoint = f"127.0.0.1:{rgw_port}"
        print(f"Ceph RGW up at {endpoint} in {time.perf_counter() - started:.1f} s", flush=True)
        server_pids = rgw_pids(cluster)
        client = Minio(endpoint, access_key=access, secret_key=secret, secure=False)
        bucket = "ferry-bench"
        client.make_bucket(bucket)

        def empty_bucket() -> None:
            names = [o.object_name for o in client.list_objects(bucket, recursive=True) if o.object_name]
            errors = list(client.remove_objects(bucket, (DeleteObject(n) for n in names)))
            assert not errors, errors[:3]
            subprocess.run([str(CEPH), "gc", str(cluster)], check=True, capture_output=True)

        s3_env = {
            "FERRY_OBJECT_STORE_URL": f"s3://{bucket}/ferry",
            "FERRY_S3_ENDPOINT": endpoint,
            "FERRY_S3_ACCESS_KEY": access,
            "FERRY_S3_SECRET_KEY": secret,
            "FERRY_S3_SECURE": "false",
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_LOG_LEVEL": "warning",
        }
        ingest_env = {**s3_env, "FERRY_STATE_DIR": str(work / "state")}
        # No analytics call and no instance-metadata lookup: both wait on a network that is
        # not there and would count against DVC.
        dvc_env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "DVC_NO_ANALYTICS": "1",
        }
        dvc_env.pop("VIRTUAL_ENV", None)

        with spawn_and_wait("ingest", env=ingest_env, log_path=work / "ingest.log") as ingest:
            uploader = IngestClient(ingest.address, transfer_timeout=3600)
            ingest_proc = psutil.Process(ingest.pid)

            def raw_put(path: pathlib.Path, tag: str) -> float:
                before = self_cpu()
                with path.open("rb") as source:
                    client.put_object(bucket, f"raw/{tag}.csv", source, path.stat().st_size, part_size=PART)
                return self_cpu() - before

            def pandas(path: pathlib.Path, tag: str) -> float:
                out = work / f"pandas-{tag}.parquet"
                before = children_cpu()
                run_child(
                    [
                        sys.executable,
                        "-c",
                        PANDAS_SCRIPT,
                        str(path),
                        str(out),
                        endpoint,
                        access,
                        secret,
                        bucket,
                        f"pandas/{tag}.parquet",
                    ]
                )
                out.unlink()
                return children_cpu() - before

            def dvc_path(path: pathlib.Path, tag: str) -> float:
                repo = work / f"dvc-{tag}"
                repo.mkdir()
                os.link(path, repo / path.name)  # dvc add moves the file into its cache: a link keeps ours
                setup = [
                    ["init", "--no-scm", "-q"],
                    ["remote", "add", "-d", "store", f"s3://{bucket}/dvc/{tag}"],
                    ["remote", "modify", "store", "endpointurl", f"http://{endpoint}"],
                    ["config", "core.analytics", "false"],
                ]
                for command in setup:
                    run_child([str(dvc), *command], cwd=repo, env=dvc_env)
                before = children_cpu()
                run_child([str(dvc), "add", "-q", path.name], cwd=repo, env=dvc_env)
                run_child([str(dvc), "push", "-q"], cwd=repo, env=dvc_env)
                used = children_cpu() - before
                shutil.rmtree(repo)
                return used

            def ferry(path: pathlib.Path, tag: str) -> float:
                times = ingest_proc.cpu_times()
                before = times.user + times.system
                version = uploader.upload_dataset(f"bench-{tag}", path, format="csv", chunk_size=4 * MIB)
                assert version.row_count == args.rows, version.row_count
                times = ingest_proc.cpu_times()
                return float(times.user + times.system - before)

            runners: dict[str, Callable[[pathlib.Path, str], float]] = {
                "raw put": raw_put,
                "pandas": pandas,
                "DVC": dvc_path,
                "Ferry": ferry,
            }
            # Warm-up (not measured): the first requests to a new bucket are slower on RGW.
            for path in files.values():
                raw_put(path, f"warm-{path.stem}")
            empty_bucket()
            results = {(table, name): Sample() for table in files for name in PATHS}
            for round_no in range(args.rounds):
                order = PATHS[round_no % len(PATHS) :] + PATHS[: round_no % len(PATHS)]
                for table, path in files.items():
                    for name in order:
                        tag = f"r{round_no}-{'text' if 'text' in table else 'num'}-{uuid.uuid4().hex[:6]}"
                        server_before = cpu_of(server_pids)
                        started = time.perf_counter()
                        cpu = runners[name](path, tag)
                        elapsed = time.perf_counter() - started
                        sample = results[(table, name)]
                        sample.seconds.append(elapsed)
                        sample.cpu.append(cpu)
                        sample.server_cpu.append(cpu_of(server_pids) - server_before)
                        print(
                            f"round {round_no + 1}, {table}, {name}: {elapsed:.2f} s, {cpu:.2f} CPU-s"
                            f" (load {os.getloadavg()[0]:.1f})",
                            flush=True,
                        )
                        empty_bucket()
            ferry_hwm = vm_hwm_mb(ingest.pid)

        print(
            f"\n| table | path | S3 s | CPU-s (path's processes) | CPU-s per 100 MB | RGW+OSD CPU-s |"
            f" (medians of {args.rounds})"
        )
        print("|---|---|---|---|---|---|")
        for table, path in files.items():
            size = path.stat().st_size / 1e6
            for name in PATHS:
                s = results[(table, name)]
                cpu = statistics.median(s.cpu)
                label = f"{name} ({size:.1f} MB)" if name == "raw put" else name
                print(
                    f"| {table} | {label} | {statistics.median(s.seconds):.2f} | {cpu:.2f} |"
                    f" {100 * cpu / size:.2f} | {statistics.median(s.server_cpu):.2f} |"
                )
        print("\nTargets (ratios >= 1 meet them):")
        for table, path in files.items():
            size = path.stat().st_size / 1e6
            ferry_s = statistics.median(results[(table, "Ferry")].seconds)
            pandas_s = statistics.median(results[(table, "pandas")].seconds)
            dvc_s = statistics.median(results[(table, "DVC")].seconds)
            per_100 = 100 * statistics.median(results[(table, "Ferry")].cpu) / size
            print(
                f"  {table}: pandas/Ferry = {pandas_s / ferry_s:.2f} (target >= 2: {pandas_s / ferry_s / 2:.2f}),"
                f" DVC/Ferry = {dvc_s / ferry_s:.2f} (target >= 1),"
                f" ingest {per_100:.2f} CPU-s per 100 MB (target <= 2.5: {2.5 / per_100:.2f})"
            )
        print(f"  ferry-ingest peak RSS over these uploads: {ferry_hwm:.0f} MB")

        if args.big_mb:
            big = work / "big.csv"
            print(f"\ngenerating a {args.big_mb} MB CSV for the peak-RSS upload ...", flush=True)
            for path in files.values():
                path.unlink()
            generate_big(big, args.big_mb)
            rows = None
            with spawn_and_wait("ingest", env={**ingest_env, "FERRY_STATE_DIR": str(work / "state-big")}) as ingest:
                started = time.perf_counter()
                version = IngestClient(ingest.address, transfer_timeout=3600).upload_dataset(
                    "bench-big", big, format="csv", chunk_size=4 * MIB
                )
                rows = version.row_count
                elapsed = time.perf_counter() - started
                hwm = vm_hwm_mb(ingest.pid)
            print(
                f"  {big.stat().st_size / 1e6:.0f} MB CSV ({rows:,} rows) to RGW in {elapsed:.1f} s:"
                f" ferry-ingest peak RSS {hwm:.0f} MB (target < 300: {300 / hwm:.2f})"
            )
            empty_bucket()
        print(f"\n{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    finally:
        subprocess.run([str(CEPH), "down", str(cluster)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
