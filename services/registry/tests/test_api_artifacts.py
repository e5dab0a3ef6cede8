"""UploadModelVersion / DownloadModelVersion on the local object store and on S3."""

from __future__ import annotations

import hashlib
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from minio import Minio

from ferry.registry.v1 import registry_pb2 as pb

CHUNK = 256 * 1024


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def upload_messages(
    data: bytes, *, sha256: str = "", request_id: str = "", fmt: int = pb.ARTIFACT_FORMAT_ONNX
) -> Iterator[pb.UploadModelVersionRequest]:
    header = pb.UploadModelVersionHeader(
        parent="models/churn",
        model_version=pb.ModelVersion(
            artifact=pb.Artifact(sha256=sha256, format=fmt),  # type: ignore[arg-type]
            metrics={"auc": 0.9},
            lineage=pb.Lineage(training_job="trainingJobs/job-7"),
        ),
        request_id=request_id,
    )
    yield pb.UploadModelVersionRequest(header=header)
    for start in range(0, len(data), CHUNK):
        yield pb.UploadModelVersionRequest(chunk=data[start : start + CHUNK])


def download(stub: Any, name: str) -> tuple[pb.ModelVersion, bytes]:
    responses = list(stub.DownloadModelVersion(pb.DownloadModelVersionRequest(name=name)))
    assert responses[0].HasField("model_version")
    assert not any(r.HasField("model_version") for r in responses[1:])
    return responses[0].model_version, b"".join(r.chunk for r in responses)


def round_trip(registry: Any) -> pb.ModelVersion:
    registry.create_model()
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = hashlib.sha256(data).hexdigest()
    version = registry.stub.UploadModelVersion(upload_messages(data, sha256=digest, request_id="up-1"))
    assert (version.name, version.artifact.sha256, version.artifact.size_bytes) == (
        "models/churn/versions/1",
        digest,
        len(data),
    )
    assert version.artifact.uri.endswith("models/churn/versions/1/artifact.onnx")
    assert version.lineage.training_job == "trainingJobs/job-7"
    again = registry.stub.UploadModelVersion(upload_messages(data, request_id="up-1"))
    assert again.version == 1
    described, received = download(registry.stub, "models/churn/versions/latest")
    assert described.name == "models/churn/versions/1"
    assert hashlib.sha256(received).hexdigest() == described.artifact.sha256 == digest
    return version


def test_upload_and_download_on_the_local_store(registry: Any, tmp_path: pathlib.Path) -> None:
    version = round_trip(registry)
    path = tmp_path / "objects" / "models" / "churn" / "versions" / "1" / "artifact.onnx"
    assert version.artifact.uri == path.as_uri()
    assert path.stat().st_size == version.artifact.size_bytes


def test_upload_and_download_on_s3(registry_factory: Any, s3_env: dict[str, str]) -> None:
    registry = registry_factory(s3_env)
    version = round_trip(registry)
    bucket = s3_env["FERRY_OBJECT_STORE_URL"].removeprefix("s3://").split("/")[0]
    assert version.artifact.uri == f"s3://{bucket}/ferry/models/churn/versions/1/artifact.onnx"
    client = Minio(
        s3_env["FERRY_S3_ENDPOINT"],
        access_key=s3_env["FERRY_S3_ACCESS_KEY"],
        secret_key=s3_env["FERRY_S3_SECRET_KEY"],
        secure=False,
    )
    stat = client.stat_object(bucket, "ferry/models/churn/versions/1/artifact.onnx")
    assert stat.size == version.artifact.size_bytes


def test_a_wrong_sha256_is_refused_and_leaves_nothing(registry: Any, tmp_path: pathlib.Path) -> None:
    registry.create_model()
    error = failure(lambda: registry.stub.UploadModelVersion(upload_messages(b"model bytes", sha256="0" * 64)))
    assert (
        error.code() == grpc.StatusCode.INVALID_ARGUMENT and "sha256" in error.details() and "0" * 64 in error.details()
    )
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []
    assert registry.stub.GetModel(pb.GetModelRequest(name="models/churn")).latest_version == 0
    listed = registry.stub.ListModelVersions(pb.ListModelVersionsRequest(parent="models/churn"))
    assert list(listed.model_versions) == []
    assert registry.stub.UploadModelVersion(upload_messages(b"model bytes")).version == 1


def test_a_wrong_sha256_leaves_nothing_on_s3(registry_factory: Any, s3_env: dict[str, str]) -> None:
    registry = registry_factory(s3_env)
    registry.create_model()
    error = failure(lambda: registry.stub.UploadModelVersion(upload_messages(b"abc" * 1000, sha256="1" * 64)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    bucket = s3_env["FERRY_OBJECT_STORE_URL"].removeprefix("s3://").split("/")[0]
    client = Minio(
        s3_env["FERRY_S3_ENDPOINT"],
        access_key=s3_env["FERRY_S3_ACCESS_KEY"],
        secret_key=s3_env["FERRY_S3_SECRET_KEY"],
        secure=False,
    )
    assert list(client.list_objects(bucket, recursive=True)) == []


def test_malformed_upload_streams(registry: Any) -> None:
    registry.create_model()
    stub = registry.stub

    def chunk_first() -> Iterator[pb.UploadModelVersionRequest]:
        yield pb.UploadModelVersionRequest(chunk=b"abc")

    def two_headers() -> Iterator[pb.UploadModelVersionRequest]:
        messages = list(upload_messages(b"abc"))
        yield from [messages[0], messages[1], messages[0]]

    for messages, field in [
        (chunk_first(), "header"),
        (two_headers(), "header"),
        (upload_messages(b"abc", fmt=pb.ARTIFACT_FORMAT_UNSPECIFIED), "artifact.format"),
        (upload_messages(b""), "no artifact bytes"),
    ]:
        error = failure(lambda m=messages: stub.UploadModelVersion(m))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details()
    assert stub.GetModel(pb.GetModelRequest(name="models/churn")).latest_version == 0


def test_download_of_an_artifact_outside_the_store(registry: Any) -> None:
    registry.create_model()
    registry.create_version()  # s3://bucket/churn.onnx, not in this registry's store
    error = failure(lambda: download(registry.stub, "models/churn/versions/1"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "s3://bucket/churn.onnx" in error.details()
    error = failure(lambda: download(registry.stub, "models/churn/versions/2"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_a_client_that_goes_away_mid_upload_leaves_nothing(registry: Any, tmp_path: pathlib.Path) -> None:
    registry.create_model()
    sent = threading.Event()
    release = threading.Event()

    def stalled() -> Iterator[pb.UploadModelVersionRequest]:
        messages = upload_messages(b"x" * (2 * CHUNK))
        yield next(messages)
        yield next(messages)
        sent.set()
        release.wait(10)  # the client stalls, then goes away

    call = registry.stub.UploadModelVersion.future(stalled())
    assert sent.wait(10)
    time.sleep(0.3)  # the server has reserved the number and started writing
    call.cancel()
    release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]:
        time.sleep(0.05)
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []
    assert registry.stub.UploadModelVersion(upload_messages(b"complete")).version == 1
