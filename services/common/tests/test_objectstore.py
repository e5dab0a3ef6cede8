"""The object-store interface, on the local backend and on a real S3 endpoint (moto)."""

from __future__ import annotations

import hashlib
import pathlib

import pytest

from ferry_common.errors import FailedPrecondition, NotFound, Unavailable
from ferry_common.objectstore import ObjectStore, open_object_store
from ferry_common.pytest_plugin import free_port
from ferry_common.settings import load_settings


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> ObjectStore:
    env = {"FERRY_STATE_DIR": str(tmp_path)}
    if request.param == "s3":
        env.update(request.getfixturevalue("s3_env"))
    store = open_object_store(load_settings("ingest", env))
    store.check()
    return store


def test_round_trip_streams_hashes_and_lists(store: ObjectStore) -> None:
    chunks = [bytes([i]) * 700_000 for i in range(5)]  # 3.5 MB in uneven chunks
    info = store.put_chunks("datasets/a/versions/1/data.parquet", iter(chunks))
    data = b"".join(chunks)
    assert info.size_bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.uri.endswith("datasets/a/versions/1/data.parquet")
    assert b"".join(store.iter_chunks("datasets/a/versions/1/data.parquet")) == data
    store.put_chunks("datasets/a/versions/1/profile.json", [b"{}"])
    store.put_chunks("datasets/b/versions/1/data.parquet", [b"x"])
    assert store.list("datasets/a/") == ["datasets/a/versions/1/data.parquet", "datasets/a/versions/1/profile.json"]
    assert store.exists("datasets/b/versions/1/data.parquet")
    store.delete_prefix("datasets/a/")
    assert store.list("datasets/a/") == []
    assert not store.exists("datasets/a/versions/1/data.parquet")


def test_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound, match="'nope/x'"):
        list(store.iter_chunks("nope/x"))


def test_failed_write_leaves_nothing_visible(store: ObjectStore) -> None:
    def broken() -> object:
        yield b"a" * 1000
        raise OSError("client went away")

    with pytest.raises(OSError):
        store.put_chunks("models/m/versions/1/artifact.onnx", broken())  # type: ignore[arg-type]
    assert not store.exists("models/m/versions/1/artifact.onnx")
    assert store.list("models/") == []


def test_wrong_endpoint_fails_fast_naming_it(tmp_path: pathlib.Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    settings = load_settings(
        "ingest",
        {"FERRY_STATE_DIR": str(tmp_path), "FERRY_OBJECT_STORE_URL": "s3://data", "FERRY_S3_ENDPOINT": endpoint},
    )
    with pytest.raises(Unavailable, match=f"FERRY_S3_ENDPOINT {endpoint}: cannot connect"):
        open_object_store(settings).check()


def test_missing_bucket_fails_fast_naming_it(tmp_path: pathlib.Path, s3_env: dict[str, str]) -> None:
    env = {**s3_env, "FERRY_STATE_DIR": str(tmp_path), "FERRY_OBJECT_STORE_URL": "s3://no-such-bucket"}
    with pytest.raises(FailedPrecondition, match="bucket 'no-such-bucket' does not exist"):
        open_object_store(load_settings("ingest", env)).check()
