"""Client-side helpers for ingest tests and benchmarks (no pytest needed).

:class:`Ingest` wraps a stub of a running server with upload/read helpers and knows
how standard tools reach the stored objects (pyarrow on the bucket or the directory).
"""

from __future__ import annotations

import io
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import grpc
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from grpc_health.v1 import health_pb2, health_pb2_grpc
from minio import Minio

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry.ingest.v1 import ingest_pb2_grpc as pbg
from ferry_common.pytest_plugin import free_port
from ferry_common.settings import Settings

__all__ = ["FORMATS", "Ingest", "IngestProcess", "csv_bytes", "rpc_error", "stored_keys", "upload_requests"]

FORMATS = {"csv": pb.DATA_FORMAT_CSV, "parquet": pb.DATA_FORMAT_PARQUET, "jsonl": pb.DATA_FORMAT_JSONL}


@dataclass
class Ingest:
    """A running ingest server and what tests need to reach its data."""

    stub: pbg.IngestServiceStub
    settings: Settings
    backend: str

    def upload(
        self,
        dataset_id: str,
        data: bytes,
        fmt: str = "csv",
        *,
        chunk_size: int = 64 * 1024,
        request_id: str = "",
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> pb.DatasetVersion:
        version: pb.DatasetVersion = self.stub.UploadDataset(
            upload_requests(dataset_id, data, fmt, chunk_size, request_id, description, labels or {}), timeout=120
        )
        return version

    def read(self, name: str, *, fmt: str = "parquet", columns: Iterable[str] = (), split: str = "") -> bytes:
        request = pb.ReadDatasetRequest(name=name, format=FORMATS[fmt], columns=list(columns), split=split)
        return b"".join(r.chunk for r in self.stub.ReadDataset(request, timeout=60))

    def read_table(self, name: str, *, columns: Iterable[str] = (), split: str = "") -> pa.Table:
        return pq.read_table(io.BytesIO(self.read(name, columns=columns, split=split)))

    def filesystem_path(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """Where standard tools read ``uri`` from: the bucket itself, or the local path."""
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return pafs.LocalFileSystem(), parsed.path
        s3 = self.settings.s3
        fs = pafs.S3FileSystem(
            endpoint_override=s3.endpoint,
            scheme="http",
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region="us-east-1",
        )
        return fs, f"{parsed.netloc}{parsed.path}"

    def read_from_store(self, uri: str) -> pa.Table:
        fs, path = self.filesystem_path(uri)
        return pq.read_table(path, filesystem=fs)


def upload_requests(
    dataset_id: str,
    data: bytes,
    fmt: str = "csv",
    chunk_size: int = 64 * 1024,
    request_id: str = "",
    description: str = "",
    labels: dict[str, str] | None = None,
) -> Iterator[pb.UploadDatasetRequest]:
    header = pb.UploadDatasetHeader(
        dataset_id=dataset_id,
        format=FORMATS[fmt],
        request_id=request_id,
        description=description,
        labels=labels or {},
    )
    yield pb.UploadDatasetRequest(header=header)
    for start in range(0, len(data), chunk_size):
        yield pb.UploadDatasetRequest(chunk=data[start : start + chunk_size])


def rpc_error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> grpc.RpcError:
    """The error a call raises (fails the test when it succeeds)."""
    try:
        result = call(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, bytes | str):
            list(result)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"{call!r} succeeded; an error was expected")


def csv_bytes(rows: int = 1000) -> bytes:
    lines = ["id,score,kind,flag"]
    for i in range(rows):
        score = "" if i % 10 == 3 else f"{(i * 37) % 101 / 4}"
        lines.append(f"{i},{score},{'abc'[i % 3]},{'true' if i % 2 else 'false'}")
    return ("\n".join(lines) + "\n").encode()


class IngestProcess:
    """``ferry-ingest`` started as a subprocess on a free loopback port."""

    def __init__(self, state: pathlib.Path, env: dict[str, str]) -> None:
        self.state = state
        self.address = f"127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            **env,
            "FERRY_STATE_DIR": str(state),
            "FERRY_INGEST_ADDRESS": self.address,
            "OTEL_TRACES_EXPORTER": "none",
            "FERRY_LOG_FORMAT": "json",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        self.proc = subprocess.Popen(
            [str(pathlib.Path(sys.executable).parent / "ferry-ingest")],
            env=self.env,
            cwd=self.state,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(self.address))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "ferry-ingest exited early"
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return self
            except grpc.RpcError:
                time.sleep(0.1)
        raise AssertionError("ferry-ingest never became SERVING")

    def stub(self) -> pbg.IngestServiceStub:
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        return pbg.IngestServiceStub(grpc.insecure_channel(self.address, options=options))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stored_keys(state: pathlib.Path, env: dict[str, str]) -> list[str]:
    """Every object key a server with ``FERRY_STATE_DIR=state`` and ``env`` has stored."""
    if not env:
        root = state / "objects"
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []
    bucket, _, prefix = env["FERRY_OBJECT_STORE_URL"].removeprefix("s3://").partition("/")
    client = Minio(env["FERRY_S3_ENDPOINT"], access_key="test", secret_key="test", secure=False)
    names = [o.object_name or "" for o in client.list_objects(bucket, prefix=f"{prefix}/", recursive=True)]
    return sorted(name.removeprefix(f"{prefix}/") for name in names)
