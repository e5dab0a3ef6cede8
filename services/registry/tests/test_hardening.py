"""Regression tests of issue 7: bad input found by probing the registry as an outsider.

Each case once ended in INTERNAL, was wrongly accepted, or hid its status behind an
oversized message; each must now be INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import grpc
import pytest

from ferry.registry.v1 import registry_pb2 as pb

SHA = "ab" * 32


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def register(registry: Any, uri: str) -> Any:
    version = pb.ModelVersion(artifact=pb.Artifact(uri=uri, sha256=SHA, format=pb.ARTIFACT_FORMAT_ONNX))
    return registry.stub.CreateModelVersion(pb.CreateModelVersionRequest(parent="models/churn", model_version=version))


@pytest.mark.parametrize("model_id", ["abc\n", "abc\r", "\nabc", "ab c", "abc-"])
def test_an_id_with_a_trailing_newline_or_space_is_refused(registry: Any, model_id: str) -> None:
    error = failure(lambda: registry.create_model(model_id))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_id" in error.details()
    assert not registry.stub.ListModels(pb.ListModelsRequest()).models


def test_an_alias_with_a_trailing_newline_is_not_a_second_alias(registry: Any) -> None:
    registry.create_model()
    registry.create_version()
    registry.set_alias("models/churn/aliases/prod", 1)
    error = failure(lambda: registry.set_alias("models/churn/aliases/prod\n", 1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in error.details()
    aliases = registry.stub.ListAliases(pb.ListAliasesRequest(parent="models/churn")).aliases
    assert [a.name for a in aliases] == ["models/churn/aliases/prod"]


@pytest.mark.parametrize("version", ["²", "٣", "\uff11", "1\n", "+1", "0", "-1", "1" * 19])
def test_only_ascii_digits_are_version_numbers(registry: Any, version: str) -> None:
    registry.create_model()
    registry.create_version()
    name = f"models/churn/versions/{version}"
    error = failure(lambda: registry.stub.GetModelVersion(pb.GetModelVersionRequest(name=name)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in error.details()


@pytest.mark.parametrize(
    "position", [{"before": 10**30}, {"before": 2**63}, {"before": [1]}, {"before": {"a": 1}}, {"before": "3"}]
)
def test_page_tokens_with_huge_or_foreign_values_are_invalid(registry: Any, position: dict[str, Any]) -> None:
    registry.create_model()
    bad = token({"model": "churn", "filter": "{}", **position})
    error = failure(
        lambda: registry.stub.ListModelVersions(pb.ListModelVersionsRequest(parent="models/churn", page_token=bad))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in error.details()


@pytest.mark.parametrize("after", [10**30, -(2**70), [1, 2], {"x": 1}, "abc"])
def test_alias_event_page_tokens_with_huge_or_foreign_values_are_invalid(registry: Any, after: Any) -> None:
    registry.create_model()
    bad = token({"model": "churn", "after": after})
    error = failure(
        lambda: registry.stub.ListAliasEvents(pb.ListAliasEventsRequest(parent="models/churn", page_token=bad))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in error.details()


@pytest.mark.parametrize("garbage", ["%%%", "a" * 9000, token([1, 2]), token(10**40)])
def test_garbage_page_tokens_are_invalid_with_a_short_message(registry: Any, garbage: str) -> None:
    error = failure(lambda: registry.stub.ListModels(pb.ListModelsRequest(page_token=garbage)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in error.details()
    assert len(error.details()) < 500


def test_a_10_kb_id_gets_invalid_argument_not_a_metadata_overflow(registry: Any) -> None:
    for value in ("x" * 10_000, "é" * 10_000, "models/" + "a" * 10_000):
        error = failure(lambda v=value: registry.create_model(v))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "model_id" in error.details() and len(error.details()) < 500
        error = failure(lambda v=value: registry.stub.GetModel(pb.GetModelRequest(name=f"models/{v}")))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 500


def test_an_artifact_uri_escaping_the_object_store_is_refused_at_registration(registry: Any, tmp_path: Any) -> None:
    registry.create_model()
    objects = (tmp_path / "objects").resolve().as_uri()
    for uri in (
        f"{objects}/../../etc/passwd",
        f"{objects}/models/../../../etc/passwd",
        f"{objects}/models/{quote('..')}/x",
        f"{objects}/models/%2e%2e/%2e%2e/etc/passwd",
        "file:///etc/passwd",
        "file:///tmp/model.onnx",
        "s3://bucket/models/../secrets",
    ):
        error = failure(lambda u=uri: register(registry, u))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (uri, error.details())
        assert "artifact.uri" in error.details()
    assert not registry.stub.ListModelVersions(pb.ListModelVersionsRequest(parent="models/churn")).model_versions


def test_an_artifact_uri_in_another_services_prefix_is_refused(registry: Any, tmp_path: Any) -> None:
    registry.create_model()
    objects = (tmp_path / "objects").resolve().as_uri()
    error = failure(lambda: register(registry, f"{objects}/datasets/penguins/versions/1/data.parquet"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "artifact.uri" in error.details() and "models/" in error.details()
    # The registry's own prefix and other buckets (models kept elsewhere) stay allowed.
    assert register(registry, f"{objects}/models/churn/external/model.onnx").name == "models/churn/versions/1"
    assert register(registry, "s3://another-bucket/churn/model.onnx").name == "models/churn/versions/2"


def test_an_s3_key_with_dot_dot_is_refused_by_the_store_not_an_internal_error() -> None:
    from ferry_common.errors import FailedPrecondition
    from ferry_common.objectstore import S3ObjectStore
    from ferry_common.settings import S3Settings

    store = S3ObjectStore(S3Settings(endpoint="127.0.0.1:1", access_key="a", secret_key="b", secure=False), "bucket")
    with pytest.raises(FailedPrecondition):
        store.iter_chunks("models/../datasets/x")


def test_a_page_token_replayed_with_another_filter_or_page_size_is_invalid(registry: Any) -> None:
    for model_id in ("a", "b", "c"):
        registry.create_model(model_id, team="x")
    first = registry.stub.ListModels(pb.ListModelsRequest(page_size=1, filter="labels.team=x"))
    assert first.next_page_token
    again = registry.stub.ListModels(
        pb.ListModelsRequest(page_size=1, filter="labels.team=x", page_token=first.next_page_token)
    )
    assert [m.name for m in again.models] == ["models/b"]
    for request in (
        pb.ListModelsRequest(page_size=2, filter="labels.team=x", page_token=first.next_page_token),
        pb.ListModelsRequest(page_size=1, filter="labels.team=y", page_token=first.next_page_token),
        pb.ListModelsRequest(page_size=1, page_token=first.next_page_token),
    ):
        error = failure(lambda r=request: registry.stub.ListModels(r))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in error.details()
        assert "different" in error.details()


def test_a_huge_update_mask_path_is_echoed_short(registry: Any) -> None:
    from google.protobuf.field_mask_pb2 import FieldMask

    registry.create_model()
    request = pb.UpdateModelRequest(model=pb.Model(name="models/churn"), update_mask=FieldMask(paths=["é" * 80_000]))
    error = failure(lambda: registry.stub.UpdateModel(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "update_mask" in error.details()
    assert len(error.details().encode()) < 1000
