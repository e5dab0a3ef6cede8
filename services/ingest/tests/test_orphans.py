"""kill -9 between a version's objects and its row: the next start removes the objects.

A commit writes the objects first and the row last (see ``ferry_ingest.writer``). The
test holds the row back with a table lock on PostgreSQL, waits until the objects are
complete in the S3 bucket (a real S3 endpoint), kills the process, and checks that the
restarted service removed them, so the bucket holds only what a row names.
"""

from __future__ import annotations

import contextlib
import pathlib
import threading
import time

import grpc
import psycopg
import pytest

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.testing import IngestProcess, stored_keys, upload_requests

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CSV = b"a,b\n1,x\n2,y\n3,z\n"
OTHER = b"a,b\n4,u\n5,v\n6,w\n"


def _upload_in_background(server: IngestProcess, dataset: str, data: bytes) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(grpc.RpcError):  # the server is killed under it
            server.stub().UploadDataset(upload_requests(dataset, data), timeout=60)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(keys: set[str], state: pathlib.Path, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while not keys <= set(stored_keys(state, env)):
        assert time.monotonic() < deadline, f"objects never appeared: {sorted(keys - set(stored_keys(state, env)))}"
        time.sleep(0.05)


def test_kill_9_after_objects_before_row_leaves_no_orphan_objects(
    tmp_path: pathlib.Path, s3_env: dict[str, str], postgres_url: str
) -> None:
    env = {**s3_env, "FERRY_INGEST_DATABASE_URL": postgres_url}
    state = tmp_path / "state"
    state.mkdir()
    server = IngestProcess(state, env).start()
    try:
        first = server.stub().UploadDataset(upload_requests("kept", CSV), timeout=60)
        assert first.name == "datasets/kept/versions/1"
        committed = stored_keys(state, env)

        # Hold every new version row back: the commit writes its objects, then waits.
        lock = psycopg.connect(postgres_url.replace("+psycopg", ""))
        lock.execute("BEGIN")
        lock.execute("LOCK TABLE dataset_versions IN SHARE MODE")
        try:
            uploads = [_upload_in_background(server, "kept", OTHER), _upload_in_background(server, "fresh", CSV)]
            orphans = {
                "datasets/kept/versions/2/data.parquet",
                "datasets/kept/versions/2/profile.json",
                "datasets/fresh/versions/1/data.parquet",
                "datasets/fresh/versions/1/profile.json",
            }
            _wait_for(orphans, state, env)  # complete objects, visible in the bucket, no row yet
            server.kill()
        finally:
            lock.rollback()
            lock.close()
        for upload in uploads:
            upload.join(timeout=30)

        server = IngestProcess(state, env).start()
        stub = server.stub()
        assert stored_keys(state, env) == committed, "objects without a row survived the restart"
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetDataset(pb.GetDatasetRequest(name="datasets/fresh"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert stub.GetDataset(pb.GetDatasetRequest(name="datasets/kept")).latest_version == 1
        # The numbers are allocated again, and the new versions hold their own data.
        again = stub.UploadDataset(upload_requests("kept", OTHER), timeout=60)
        assert (again.name, again.row_count) == ("datasets/kept/versions/2", 3)
        assert "datasets/kept/versions/2/data.parquet" in stored_keys(state, env)
    finally:
        server.stop()


def test_a_clean_restart_keeps_every_committed_object(tmp_path: pathlib.Path, s3_env: dict[str, str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    server = IngestProcess(state, s3_env).start()
    try:
        for data in (CSV, OTHER):
            server.stub().UploadDataset(upload_requests("kept", data), timeout=60)
        server.stub().DeleteDatasetVersion(pb.DeleteDatasetVersionRequest(name="datasets/kept/versions/1"))
        before = stored_keys(state, s3_env)
        assert before == ["datasets/kept/versions/2/data.parquet", "datasets/kept/versions/2/profile.json"]
        server.stop()
        server = IngestProcess(state, s3_env).start()
        assert stored_keys(state, s3_env) == before
        assert server.stub().GetDatasetVersion(pb.GetDatasetVersionRequest(name="datasets/kept/versions/2")).row_count
    finally:
        server.stop()
