"""ferry-ingest as a real process: kill -9 mid-upload, and a 1 GB upload in bounded memory."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_common.pytest_plugin import free_port
from ferry_ingest.testing import IngestProcess, rpc_error, stored_keys, upload_requests

BIN = pathlib.Path(sys.executable).parent
MIB = 1024 * 1024


def write_csv(path: pathlib.Path, target_bytes: int, seed: int = 0, *, free_text: bool = False) -> int:
    """A numeric + categorical CSV of about ``target_bytes``; returns its row count.

    ``free_text`` adds ``note``: three words and a number, almost every value distinct (the
    profile's categorical bound saturates on it in the first row group).
    """
    rng = np.random.default_rng(seed)
    fields = [("id", pa.int64()), ("x", pa.float64()), ("y", pa.float64()), ("n", pa.int64()), ("kind", pa.string())]
    schema = pa.schema([*fields, ("note", pa.string())] if free_text else fields)
    words = pa.array([f"w{i:04d}" for i in range(2000)])
    rows, block = 0, 250_000
    with pacsv.CSVWriter(path, schema) as writer:
        while path.stat().st_size < target_bytes:
            columns: dict[str, pa.Array | np.ndarray] = {
                "id": np.arange(rows, rows + block),
                "x": rng.normal(0, 1, block).round(6),
                "y": rng.exponential(10, block).round(4),
                "n": rng.integers(0, 1000, block),
                "kind": pa.array(rng.choice(["alpha", "beta", "gamma"], block)),
            }
            if free_text:
                picked = [words.take(pa.array(rng.integers(0, len(words), block))) for _ in range(3)]
                number = pa.array(rng.integers(0, 1_000_000, block)).cast(pa.string())
                columns["note"] = pc.binary_join_element_wise(*picked, number, " ")
            writer.write_table(pa.table(columns, schema=schema))
            rows += block
    return rows


def file_chunks(path: pathlib.Path, chunk: int) -> Iterator[bytes]:
    with path.open("rb") as source:
        while data := source.read(chunk):
            yield data


@pytest.fixture(params=["local", "s3"])
def backend_env(request: pytest.FixtureRequest) -> dict[str, str]:
    return dict(request.getfixturevalue("s3_env")) if request.param == "s3" else {}


@pytest.mark.slow
def test_kill_9_mid_upload_leaves_nothing_and_the_retry_succeeds(
    tmp_path: pathlib.Path, backend_env: dict[str, str]
) -> None:
    source = tmp_path / "big.csv"
    rows = write_csv(source, 48 * MIB)
    state = tmp_path / "state"
    state.mkdir()
    server = IngestProcess(state, backend_env).start()
    try:
        sent = 0

        def requests() -> Iterator[pb.UploadDatasetRequest]:
            nonlocal sent
            header = pb.UploadDatasetHeader(dataset_id="big", format=pb.DATA_FORMAT_CSV, request_id="big-1")
            yield pb.UploadDatasetRequest(header=header)
            for chunk in file_chunks(source, MIB):
                if sent >= 24 * MIB:
                    server.kill()  # half way through the stream
                    time.sleep(0.2)
                sent += len(chunk)
                yield pb.UploadDatasetRequest(chunk=chunk)

        error = rpc_error(server.stub().UploadDataset, requests(), timeout=120)
        assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
        assert server.proc is not None and server.proc.wait(timeout=30) == -signal.SIGKILL
        leftovers = list((state / "tmp" / "ingest").iterdir())
        assert leftovers, "the killed process left its spool behind"

        server = IngestProcess(state, backend_env).start()
        stub = server.stub()
        assert not stub.ListDatasets(pb.ListDatasetsRequest()).datasets
        assert rpc_error(stub.GetDataset, pb.GetDatasetRequest(name="datasets/big")).code() == grpc.StatusCode.NOT_FOUND
        error = rpc_error(stub.GetDatasetVersion, pb.GetDatasetVersionRequest(name="datasets/big/versions/latest"))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert not any(path.exists() for path in leftovers), "the dead process's scratch files were not swept"
        assert stored_keys(state, backend_env) == []

        version = stub.UploadDataset(
            upload_requests("big", source.read_bytes(), chunk_size=4 * MIB, request_id="big-1"), timeout=300
        )
        assert (version.name, version.row_count) == ("datasets/big/versions/1", rows)
        assert stored_keys(state, backend_env) == [
            "datasets/big/versions/1/data.parquet",
            "datasets/big/versions/1/profile.json",
        ]
    finally:
        server.stop()


@pytest.mark.slow
def test_one_gigabyte_csv_streams_through_in_under_300_mb_resident(
    tmp_path: pathlib.Path, backend_env: dict[str, str]
) -> None:
    # With a free-text column (the profile saturates on it) and, on S3, the staged
    # multipart upload of data.parquet following the conversion.
    source = tmp_path / "huge.csv"
    rows = write_csv(source, 1024 * MIB, seed=1, free_text=True)
    state = tmp_path / "state"
    state.mkdir()
    server = IngestProcess(state, backend_env).start()
    assert server.proc is not None
    status = pathlib.Path(f"/proc/{server.proc.pid}/status")
    samples, stop = [_memory_status(status)], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append(_memory_status(status))
            except OSError:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        requests = (pb.UploadDatasetRequest(chunk=c) for c in file_chunks(source, 4 * MIB))
        header = pb.UploadDatasetRequest(header=pb.UploadDatasetHeader(dataset_id="huge", format=pb.DATA_FORMAT_CSV))
        started = time.monotonic()
        version = server.stub().UploadDataset(_chain(header, requests), timeout=600)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        sampler.join()
        server.stop()
    assert version.row_count == rows
    peak = max(samples, key=lambda s: s["VmRSS"])
    report = (
        f"peak RSS {peak['VmRSS'] / 1e6:.0f} MB (RssAnon {peak['RssAnon'] / 1e6:.0f} MB, "
        f"RssFile {peak['RssFile'] / 1e6:.0f} MB, RssShmem {peak['RssShmem'] / 1e6:.0f} MB, "
        f"{peak['Threads']} threads; from {samples[0]['VmRSS'] / 1e6:.0f} MB at start), {elapsed:.1f} s"
    )
    print(f"1 GB CSV: {report}")
    assert peak["VmRSS"] < 300 * 1_000_000, report


def test_the_server_process_gives_arrow_the_system_allocator() -> None:
    # Arrow's C++ default pool is fixed when pyarrow loads; what Arrow allocates without a
    # pool (Acero's group-by in the profile) went to mimalloc, which kept tens of MB of
    # freed pages resident (ferry_ingest/__init__.py, bench/ingest/README.md).
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    probe = (
        "import ferry_ingest.__main__, pyarrow as pa\n"
        "pa.table({'k': pa.array(range(100_000)) }).group_by('k').aggregate([('k', 'count')])\n"
        "print(pa.default_memory_pool().backend_name, pa.mimalloc_memory_pool().max_memory())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["system", "0"], out.stdout + out.stderr


def _memory_status(status: pathlib.Path) -> dict[str, int]:
    """VmRSS and its parts (RssAnon, RssFile, RssShmem) in bytes, and the thread count, from /proc/<pid>/status."""
    found: dict[str, int] = {}
    for line in status.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            found[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            found[key] = int(value)
    return found


def _chain(
    first: pb.UploadDatasetRequest, rest: Iterator[pb.UploadDatasetRequest]
) -> Iterator[pb.UploadDatasetRequest]:
    yield first
    yield from rest


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FERRY_OBJECT_STORE_URL": "s3://ferry", "FERRY_S3_ENDPOINT": "127.0.0.1:1"}, "FERRY_S3_ENDPOINT"),
        ({"FERRY_INGEST_DATABASE_URL": "postgresql+psycopg://nobody:pw@127.0.0.1:1/none"}, "FERRY_INGEST_DATABASE_URL"),
    ],
)
def test_a_wrong_backend_fails_fast_naming_it(tmp_path: pathlib.Path, env: dict[str, str], named: str) -> None:
    result = subprocess.run(
        [str(BIN / "ferry-ingest")],
        env={
            **os.environ,
            **env,
            "FERRY_STATE_DIR": str(tmp_path),
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_INGEST_ADDRESS": f"127.0.0.1:{free_port()}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert "pw" not in result.stderr  # no password in the message


def test_a_missing_bucket_fails_fast_naming_it(tmp_path: pathlib.Path, s3_env: dict[str, str]) -> None:
    env = {**s3_env, "FERRY_OBJECT_STORE_URL": "s3://no-such-bucket/x"}
    result = subprocess.run(
        [str(BIN / "ferry-ingest")],
        env={
            **os.environ,
            **env,
            "FERRY_STATE_DIR": str(tmp_path),
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_INGEST_ADDRESS": f"127.0.0.1:{free_port()}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "'no-such-bucket'" in result.stderr, result.stderr
