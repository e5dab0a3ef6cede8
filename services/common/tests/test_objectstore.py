"""The object-store interface, on the local backend and on a real S3 endpoint (Ceph RGW, else moto)."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from ferry_common.errors import FailedPrecondition, NotFound, Unavailable
from ferry_common.objectstore import MIN_PART_BYTES, ObjectStore, open_object_store
from ferry_common.process import closed_address
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
    endpoint = closed_address()
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


# ------------------------------------------------------------------ staged uploads


@dataclass
class Backend:
    store: ObjectStore
    scratch: pathlib.Path
    leftovers: Callable[[], list[str]]  # temporary files (local) or incomplete multipart uploads (S3)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Backend:
    root = tmp_path / "objects"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {"FERRY_STATE_DIR": str(tmp_path), "FERRY_OBJECT_STORE_URL": root.as_uri()}
    if request.param == "s3":
        env.update(request.getfixturevalue("s3_env"))
    store = open_object_store(load_settings("ingest", env))
    store.check()
    if request.param == "local":

        def leftovers() -> list[str]:
            files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            return [name for name in files if name not in store.list("")]

        return Backend(store, scratch, leftovers)
    # boto3 (a test dependency, through moto) asks through the public API, independently of minio.
    import boto3

    bucket = env["FERRY_OBJECT_STORE_URL"].removeprefix("s3://").split("/", 1)[0]
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{env['FERRY_S3_ENDPOINT']}",
        aws_access_key_id=env["FERRY_S3_ACCESS_KEY"],
        aws_secret_access_key=env["FERRY_S3_SECRET_KEY"],
        region_name="us-east-1",
    )

    def uploads() -> list[str]:
        return sorted(upload["Key"] for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    return Backend(store, scratch, uploads)


KEY = "datasets/a/versions/1/data.parquet"


def test_staged_upload_is_invisible_until_commit_then_complete(backend: Backend) -> None:
    store = backend.store
    store.put_chunks(KEY, [b"old"])
    parts = [b"a" * MIN_PART_BYTES, b"b" * (MIN_PART_BYTES + 3), b"tail"]
    upload = store.begin_staged(KEY)
    for part in parts:
        upload.put_part(part)
        assert b"".join(store.iter_chunks(KEY)) == b"old", "a staged part showed through before the commit"
        assert store.list("datasets/") == [KEY]
    info = upload.commit()
    data = b"".join(parts)
    assert (info.key, info.size_bytes, info.sha256) == (KEY, len(data), hashlib.sha256(data).hexdigest())
    assert info.uri == store.uri(KEY)
    assert b"".join(store.iter_chunks(KEY)) == data
    assert store.list("datasets/") == [KEY]
    assert backend.leftovers() == []
    upload.abort()  # after the commit: nothing to give up
    assert b"".join(store.iter_chunks(KEY)) == data


def test_staged_upload_to_a_new_key_appears_only_at_commit(backend: Backend) -> None:
    upload = backend.store.begin_staged(KEY)
    upload.put_part(b"x" * MIN_PART_BYTES)
    assert not backend.store.exists(KEY)
    assert backend.store.list("") == []
    with pytest.raises(NotFound):
        list(backend.store.iter_chunks(KEY))
    assert upload.commit().size_bytes == MIN_PART_BYTES
    assert backend.store.exists(KEY)


def test_aborted_staged_upload_leaves_nothing(backend: Backend) -> None:
    upload = backend.store.begin_staged(KEY)
    upload.put_part(b"x" * MIN_PART_BYTES)
    upload.put_part(b"y" * 10)
    assert backend.leftovers(), "the parts went nowhere before the commit"
    upload.abort()
    upload.abort()
    assert not backend.store.exists(KEY)
    assert backend.store.list("") == []
    assert backend.leftovers() == []
    with pytest.raises(ValueError, match="aborted"):
        upload.commit()


def test_staged_upload_without_parts_commits_an_empty_object(backend: Backend) -> None:
    upload = backend.store.begin_staged(KEY)
    upload.put_part(b"")
    info = upload.commit()
    assert (info.size_bytes, info.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert b"".join(backend.store.iter_chunks(KEY)) == b""
    assert backend.leftovers() == []


def test_only_the_last_part_may_be_short_on_every_backend(backend: Backend) -> None:
    upload = backend.store.begin_staged(KEY)
    upload.put_part(b"short")
    with pytest.raises(ValueError, match=f"only the last part may be shorter than {MIN_PART_BYTES} bytes"):
        upload.put_part(b"x" * MIN_PART_BYTES)
    upload.abort()
    assert backend.store.list("") == []
    assert backend.leftovers() == []


def test_open_local_gives_a_file_with_the_object_and_cleans_up(backend: Backend) -> None:
    data = bytes(range(256)) * 5000
    backend.store.put_chunks(KEY, [data])
    with backend.store.open_local(KEY, backend.scratch) as path:
        assert path.read_bytes() == data
        assert path.suffix == ".parquet"
    assert list(backend.scratch.iterdir()) == []
    assert b"".join(backend.store.iter_chunks(KEY)) == data, "the stored object went with the local file"
    with (
        pytest.raises(NotFound, match=r"'nope/x\.parquet'"),
        backend.store.open_local("nope/x.parquet", backend.scratch),
    ):
        pass
    assert list(backend.scratch.iterdir()) == []
