"""Models and versions through the real gRPC server and generated stubs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask

from ferry.registry.v1 import registry_pb2 as pb

SHA = "ab" * 32
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def test_create_model_and_version_from_issue_json(any_registry: Any) -> None:
    stub = any_registry.stub
    model = stub.CreateModel(
        json_format.ParseDict(
            {"model_id": "churn", "model": {"description": "Churn", "labels": {"team": "risk"}}},
            pb.CreateModelRequest(),
        )
    )
    assert (model.name, model.description, dict(model.labels)) == ("models/churn", "Churn", {"team": "risk"})
    request = json_format.ParseDict(
        {
            "parent": "models/churn",
            "model_version": {
                "artifact": {
                    "uri": "s3://ferry/churn/model.onnx",
                    "sha256": SHA,
                    "size_bytes": 1234,
                    "format": "ARTIFACT_FORMAT_ONNX",
                },
                "signature": {
                    "inputs": [{"name": "tenure", "datatype": "FP32", "shape": [-1, 1]}],
                    "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 2]}],
                },
                "metrics": {"auc": 0.91},
                "params": {"seed": "7"},
                "lineage": {
                    "dataset_version": "datasets/churn/versions/3",
                    "training_job": "trainingJobs/job-1",
                    "code_revision": "abc123",
                },
            },
            "request_id": "train-job-1",
        },
        pb.CreateModelVersionRequest(),
    )
    version = stub.CreateModelVersion(request)
    as_json = json_format.MessageToDict(version, preserving_proto_field_name=True)
    assert as_json["name"] == "models/churn/versions/1"
    assert as_json["version"] == "1"
    assert as_json["metrics"] == {"auc": 0.91}
    assert as_json["lineage"]["dataset_version"] == "datasets/churn/versions/3"
    assert as_json["signature"]["inputs"][0]["shape"] == ["-1", "1"]
    assert stub.CreateModelVersion(request).name == "models/churn/versions/1"  # same request_id
    assert stub.GetModel(pb.GetModelRequest(name="models/churn")).latest_version == 1


def test_get_latest_list_newest_first_and_paginate(any_registry: Any) -> None:
    registry = any_registry
    registry.create_model()
    for number in range(1, 6):
        registry.create_version(labels={"stage": "candidate" if number % 2 else "archived"})
    stub = registry.stub
    assert stub.GetModelVersion(pb.GetModelVersionRequest(name="models/churn/versions/latest")).version == 5
    seen, token = [], ""
    while True:
        page = stub.ListModelVersions(pb.ListModelVersionsRequest(parent="models/churn", page_size=2, page_token=token))
        seen.extend(v.version for v in page.model_versions)
        token = page.next_page_token
        if not token:
            break
    assert seen == [5, 4, 3, 2, 1]
    filtered = stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/churn", filter="labels.stage=candidate")
    )
    assert [v.version for v in filtered.model_versions] == [5, 3, 1]


def test_list_models_filters_by_labels(registry: Any) -> None:
    registry.create_model("churn", team="risk", tier="gold")
    registry.create_model("fraud", team="risk", tier="silver")
    registry.create_model("ads", team="growth", tier="gold")
    found = registry.stub.ListModels(pb.ListModelsRequest(filter="labels.team=risk AND labels.tier=gold"))
    assert [m.name for m in found.models] == ["models/churn"]
    page = registry.stub.ListModels(pb.ListModelsRequest(page_size=2))
    assert [m.name for m in page.models] == ["models/ads", "models/churn"]
    rest = registry.stub.ListModels(pb.ListModelsRequest(page_size=2, page_token=page.next_page_token))
    assert [m.name for m in rest.models] == ["models/fraud"] and rest.next_page_token == ""
    error = failure(lambda: registry.stub.ListModels(pb.ListModelsRequest(filter="team=risk")))
    assert error.code() == INVALID and "filter" in error.details()


def test_update_model_and_version_with_field_masks(registry: Any) -> None:
    registry.create_model(team="risk")
    registry.create_version(description="first", metrics={"auc": 0.8})
    stub = registry.stub
    model = stub.UpdateModel(
        pb.UpdateModelRequest(
            model=pb.Model(name="models/churn", description="new", labels={"x": "y"}),
            update_mask=FieldMask(paths=["description"]),
        )
    )
    assert (model.description, dict(model.labels)) == ("new", {"team": "risk"})
    version = stub.UpdateModelVersion(
        pb.UpdateModelVersionRequest(
            model_version=pb.ModelVersion(name="models/churn/versions/1", metrics={"auc": 0.85}, description="x"),
            update_mask=FieldMask(paths=["metrics"]),
        )
    )
    assert (version.description, dict(version.metrics)) == ("first", {"auc": 0.85})
    error = failure(
        lambda: stub.UpdateModel(
            pb.UpdateModelRequest(model=pb.Model(name="models/churn"), update_mask=FieldMask(paths=["name"]))
        )
    )
    assert error.code() == INVALID and "update_mask" in error.details() and "'name'" in error.details()


@pytest.mark.parametrize(
    ("call", "field", "value"),
    [
        (lambda s: s.CreateModel(pb.CreateModelRequest(model_id="Churn")), "model_id", "Churn"),
        (lambda s: s.CreateModel(pb.CreateModelRequest(model_id="a" * 64)), "model_id", "a" * 64),
        (lambda s: s.CreateModel(pb.CreateModelRequest(model_id="churn_v2")), "model_id", "churn_v2"),
        (lambda s: s.CreateModel(pb.CreateModelRequest(model_id="-churn")), "model_id", "-churn"),
        (lambda s: s.GetModel(pb.GetModelRequest(name="churn")), "name", "churn"),
        (lambda s: s.GetModelVersion(pb.GetModelVersionRequest(name="models/churn/versions/0")), "name", "0"),
        (lambda s: s.GetModelVersion(pb.GetModelVersionRequest(name="models/churn/versions/-2")), "name", "-2"),
        (lambda s: s.GetModelVersion(pb.GetModelVersionRequest(name="models/churn/versions/x")), "name", "x"),
        (
            lambda s: s.DeleteModelVersion(pb.DeleteModelVersionRequest(name="models/churn/versions/latest")),
            "name",
            "latest",
        ),
        (lambda s: s.SetAlias(pb.SetAliasRequest(name="models/churn/aliases/prod", version=0)), "version", "0"),
        (lambda s: s.SetAlias(pb.SetAliasRequest(name="models/churn/aliases/prod", version=-1)), "version", "-1"),
        (lambda s: s.SetAlias(pb.SetAliasRequest(name="models/churn/aliases/3", version=1)), "name", "3"),
        (
            lambda s: s.SetAlias(pb.SetAliasRequest(name="models/churn/aliases/prod", version=1, expected_version=-1)),
            "expected_version",
            "-1",
        ),
        (lambda s: s.ListModels(pb.ListModelsRequest(page_size=-1)), "page_size", "-1"),
        (lambda s: s.WatchAliases(pb.WatchAliasesRequest(since_revision=-1)).next(), "since_revision", "-1"),
    ],
)
def test_malformed_input_is_invalid_argument_naming_field_and_value(
    registry: Any, call: Callable[[Any], Any], field: str, value: str
) -> None:
    error = failure(lambda: call(registry.stub))
    assert error.code() == INVALID
    assert field in error.details() and value in error.details()


@pytest.mark.parametrize(
    ("artifact", "field"),
    [
        ({"uri": "", "sha256": SHA, "format": 1}, "artifact.uri"),
        ({"uri": "not a uri", "sha256": SHA, "format": 1}, "artifact.uri"),
        ({"uri": "s3://b/k", "sha256": "xyz", "format": 1}, "artifact.sha256"),
        ({"uri": "s3://b/k", "sha256": SHA, "format": 0}, "artifact.format"),
        ({"uri": "s3://b/k", "sha256": SHA, "format": 1, "size_bytes": -5}, "artifact.size_bytes"),
    ],
)
def test_bad_version_input_leaves_no_state(registry: Any, artifact: dict[str, Any], field: str) -> None:
    registry.create_model()
    request = pb.CreateModelVersionRequest(parent="models/churn", model_version=pb.ModelVersion(artifact=artifact))
    error = failure(lambda: registry.stub.CreateModelVersion(request))
    assert error.code() == INVALID and field in error.details()
    assert registry.stub.GetModel(pb.GetModelRequest(name="models/churn")).latest_version == 0
    assert registry.create_version().version == 1


def test_bad_signature_metrics_and_lineage_are_rejected(registry: Any) -> None:
    registry.create_model()
    cases = {
        "signature.inputs[0].datatype": {"signature": {"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]}},
        "signature.inputs[0].shape": {"signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [0]}]}},
        "metrics['auc']": {"metrics": {"auc": "NaN"}},
        "lineage.dataset_version": {"lineage": {"dataset_version": "penguins"}},
        "lineage.training_job": {"lineage": {"training_job": "jobs/1"}},
    }
    for field, fields in cases.items():
        version = json_format.ParseDict(
            {"artifact": {"uri": "s3://b/k", "sha256": SHA, "format": "ARTIFACT_FORMAT_ONNX"}, **fields},
            pb.ModelVersion(),
        )
        error = failure(
            lambda v=version: registry.stub.CreateModelVersion(
                pb.CreateModelVersionRequest(parent="models/churn", model_version=v)
            )
        )
        assert error.code() == INVALID, field
        assert field in error.details(), (field, error.details())


def test_unknown_resources_are_not_found_naming_them(registry: Any) -> None:
    stub = registry.stub
    error = failure(lambda: stub.GetModel(pb.GetModelRequest(name="models/ghost")))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "models/ghost" in error.details()
    registry.create_model()
    error = failure(lambda: stub.GetModelVersion(pb.GetModelVersionRequest(name="models/churn/versions/latest")))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "has no versions" in error.details()
    registry.create_version()
    error = failure(lambda: stub.GetModelVersion(pb.GetModelVersionRequest(name="models/churn/versions/7")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "models/churn/versions/7" in error.details() and "latest is 1" in error.details()
    error = failure(lambda: registry.set_alias("models/churn/aliases/production", 7))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "models/churn/versions/7" in error.details()
    error = failure(lambda: stub.ResolveAlias(pb.ResolveAliasRequest(name="models/churn/aliases/production")))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "models/churn/aliases/production" in error.details()
    error = failure(lambda: registry.create_version("ghost"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "models/ghost" in error.details()
    error = failure(lambda: registry.create_model())
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and "models/churn" in error.details()


def test_delete_rules(any_registry: Any) -> None:
    registry = any_registry
    stub = registry.stub
    registry.create_model()
    registry.create_version()
    registry.create_version()
    registry.set_alias("models/churn/aliases/production", 1)
    error = failure(lambda: stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name="models/churn/versions/1")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "production" in error.details()
    error = failure(lambda: stub.DeleteModel(pb.DeleteModelRequest(name="models/churn", force=True)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "aliases" in error.details()
    stub.DeleteAlias(pb.DeleteAliasRequest(name="models/churn/aliases/production"))
    error = failure(lambda: stub.DeleteModel(pb.DeleteModelRequest(name="models/churn")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "force" in error.details()
    stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name="models/churn/versions/2"))
    assert registry.create_version().version == 3  # 2 is never reused
    stub.DeleteModel(pb.DeleteModelRequest(name="models/churn", force=True))
    error = failure(lambda: stub.GetModel(pb.GetModelRequest(name="models/churn")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
