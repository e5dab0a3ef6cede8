"""Client-side helpers for ingest tests and benchmarks (no pytest needed).

:class:`Ingest` wraps a running server: its raw stub (contract tests drive it
deliberately), the SDK's :class:`ferry_sdk.IngestClient` for plain uploads, and how
standard tools reach the stored objects (pyarrow on the bucket or the directory).
:class:`IngestProcess` runs ``ferry-ingest`` through :func:`ferry_sdk.spawn_and_wait`.
"""

from __future__ import annotations

import functools
import io
import pathlib
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import grpc
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from minio import Minio

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry.ingest.v1 import ingest_pb2_grpc as pbg
from ferry_common.settings import Settings
from ferry_sdk import IngestClient, ServiceProcess, spawn_and_wait

__all__ = ["FORMATS", "Ingest", "IngestProcess", "csv_bytes", "rpc_error", "stored_keys", "upload_requests"]

FORMATS = {"csv": pb.DATA_FORMAT_CSV, "parquet": pb.DATA_FORMAT_PARQUET, "jsonl": pb.DATA_FORMAT_JSONL}


@dataclass
class Ingest:
    """A running ingest server and what tests need to reach its data."""

    stub: pbg.IngestServiceStub
    settings: Settings
    backend: str
    address: str = ""

    @functools.cached_property
    def client(self) -> IngestClient:
        """The SDK client of this server (needs ``address``)."""
        assert self.address, "Ingest was made without the server's address"
        return IngestClient(self.address, settings=self.settings, timeout=120)

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
        """Upload through the SDK client, in ``chunk_size`` chunks (small ones test chunk boundaries)."""
        return self.client.upload_dataset(
            dataset_id,
            data,
            format=fmt,
            chunk_size=chunk_size,
            request_id=request_id,
            description=description,
            labels=labels,
        )

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
    """``ferry-ingest`` started as a subprocess on a free loopback port (:func:`ferry_sdk.spawn_and_wait`)."""

    def __init__(self, state: pathlib.Path, env: dict[str, str]) -> None:
        self.state = state
        self.env = {**env, "FERRY_STATE_DIR": str(state), "OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json"}
        self.service: ServiceProcess | None = None

    @property
    def address(self) -> str:
        assert self.service is not None, "not started"
        return self.service.address

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.service.process if self.service is not None else None

    def start(self) -> IngestProcess:
        self.service = spawn_and_wait("ingest", env=self.env, cwd=self.state)
        return self

    def stub(self) -> pbg.IngestServiceStub:
        """A raw stub, for contract tests that craft streams by hand."""
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        return pbg.IngestServiceStub(grpc.insecure_channel(self.address, options=options))

    def kill(self) -> None:
        assert self.service is not None
        self.service.kill()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(timeout=20)


def stored_keys(state: pathlib.Path, env: dict[str, str]) -> list[str]:
    """Every object key a server with ``FERRY_STATE_DIR=state`` and ``env`` has stored."""
    if not env:
        root = state / "objects"
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []
    bucket, _, prefix = env["FERRY_OBJECT_STORE_URL"].removeprefix("s3://").partition("/")
    client = Minio(
        env["FERRY_S3_ENDPOINT"],
        access_key=env.get("FERRY_S3_ACCESS_KEY", ""),
        secret_key=env.get("FERRY_S3_SECRET_KEY", ""),
        secure=False,
    )
    names = [o.object_name or "" for o in client.list_objects(bucket, prefix=f"{prefix}/", recursive=True)]
    return sorted(name.removeprefix(f"{prefix}/") for name in names)
