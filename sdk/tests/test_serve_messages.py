"""What ``ServeClient`` sends and how it reads answers, without a server.

Requests are checked as the messages serve receives; rows and answers as Triton tensors
in both directions (the end-to-end behaviour is in ``test_serve_client.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from ferry.serve.v1 import serve_pb2 as pb
from ferry_sdk import _serve_frames as frames
from ferry_sdk import errors
from ferry_sdk._serve_messages import UNSET, create_request, update_request

SIGNATURE = frames.Signature(
    inputs=(frames.TensorMeta("x", "FP32", (-1, 1)), frames.TensorMeta("color", "BYTES", (-1, 1))),
    outputs=(frames.TensorMeta("probabilities", "FP32", (-1, 3)), frames.TensorMeta("label", "BYTES", (-1, 1))),
    version="4",
)
NOT_GIVEN = {"primary": UNSET, "canary": UNSET, "shadow": UNSET, "batching": UNSET, "sample_rate": UNSET}


def create(**fields: object) -> pb.CreateDeploymentRequest:
    arguments: dict[str, object] = {
        "model": "iris",
        "primary_alias": "production",
        "primary_version": None,
        "canary": None,
        "shadow": None,
        "batching": None,
        "sample_rate": 1.0,
    }
    return create_request("", None, **(arguments | fields))  # type: ignore[arg-type]


def update(**fields: object) -> pb.UpdateDeploymentRequest:
    return update_request("iris", **(NOT_GIVEN | fields), etag="")  # type: ignore[arg-type]


def test_create_maps_targets_splits_and_batching() -> None:
    request = create(canary=("staging", 10), shadow=(3, 5), batching={"max_batch_size": 16})
    deployment = request.deployment
    assert deployment.model == "models/iris" and deployment.primary.alias == "production"
    assert (deployment.canary.target.alias, deployment.canary.percent) == ("staging", 10)
    assert (deployment.shadow.target.version, deployment.shadow.percent) == (3, 5)
    assert (deployment.batching.enabled, deployment.batching.max_batch_size) == (True, 16)
    assert create(primary_version=2).deployment.primary.version == 2
    assert not create().deployment.HasField("canary")

    with pytest.raises(ValueError, match="update_deployment"):
        create(sample_rate=0.0)  # 0 at create would mean "every request" on the wire
    with pytest.raises(ValueError, match="not both"):
        create(primary_alias="staging", primary_version=2)
    with pytest.raises(TypeError):
        create(canary=(True, 10))  # a bool is not version 1
    with pytest.raises(TypeError, match="max_batch"):
        create(batching={"max_batch": 16})

    whole = pb.Deployment(model="models/iris", sample_rate=0.25)
    given = create_request(
        "mine",
        whole,
        model="",
        primary_alias="production",
        primary_version=None,
        canary=None,
        shadow=None,
        batching=None,
        sample_rate=1.0,
    )
    assert (given.deployment_id, given.deployment) == ("mine", whole)


def test_update_masks_exactly_the_arguments_given() -> None:
    assert list(update(canary=(2, 30)).update_mask.paths) == ["canary"]
    removal = update(canary=None, sample_rate=0.0)
    assert list(removal.update_mask.paths) == ["canary", "sample_rate"]
    assert not removal.deployment.HasField("canary") and removal.deployment.sample_rate == 0.0
    assert list(update(batching=None).update_mask.paths) == ["batching"]
    assert update(primary=7).deployment.primary.version == 7
    assert update(primary="production").deployment.name == "deployments/iris"
    with pytest.raises(ValueError, match="give primary"):
        update()
    with pytest.raises(ValueError, match="primary"):
        update(primary=None)


def test_rows_become_one_column_tensor_per_input() -> None:
    rows = pd.DataFrame({"color": ["red", None, float("nan"), 7], "x": [0.5, None, 2, 3], "id": [1, 2, 3, 4]})
    request = frames.infer_request("iris", rows, SIGNATURE, version="production", request_id="r1")
    assert (request.model_name, request.model_version, request.id) == ("iris", "production", "r1")
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("x", "FP32", [4, 1]),
        ("color", "BYTES", [4, 1]),
    ]
    x = np.frombuffer(request.raw_input_contents[0], dtype=np.float32)
    np.testing.assert_array_equal(x, [0.5, np.nan, 2, 3])
    assert list(deserialize_bytes_tensor(request.raw_input_contents[1])) == [b"red", b"", b"", b"7"]

    with pytest.raises(errors.InvalidArgument) as bad:
        frames.infer_request("iris", rows.assign(x=[1, 2, "n/a", 4]), SIGNATURE, version="", request_id="")
    assert bad.value.field == "inputs[0]" and "'n/a'" in bad.value.message and "version 4" in bad.value.message
    with pytest.raises(errors.InvalidArgument, match="no rows"):
        frames.infer_request("iris", rows.iloc[:0], SIGNATURE, version="", request_id="")
    assert list(frames.to_frame({"x": np.array([[1.0], [2.0]]), "color": ["a", "b"]}).columns) == ["x", "color"]


def answer(probabilities: list[list[float]], labels: list[str]) -> service_pb2.ModelInferResponse:
    response = service_pb2.ModelInferResponse(model_name="iris", model_version="4", id="r1")
    response.outputs.add(name="probabilities", datatype="FP32", shape=[len(labels), 3])
    response.outputs.add(name="label", datatype="BYTES", shape=[len(labels), 1])
    response.raw_output_contents.append(np.array(probabilities, dtype=np.float32).tobytes())
    response.raw_output_contents.append(
        serialize_byte_tensor(np.array([s.encode() for s in labels], dtype=object)).item()
    )
    return response


def test_answers_are_joined_with_class_columns_when_the_classes_are_known() -> None:
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["b", "c", "a"]}, index=[7, 8, 9])
    every_class = answer([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]], ["b", "c", "a"])
    joined = frames.result_frame(rows, every_class, classes=None)
    assert list(joined.columns) == ["x", "label", "probability_a", "probability_b", "probability_c", "label_output"]
    assert list(joined.index) == [7, 8, 9] and joined.attrs == {
        "deployment": "iris",
        "model_version": 4,
        "request_id": "r1",
    }
    assert joined["probability_b"].dtype == np.float64 and list(joined["label_output"]) == ["b", "c", "a"]

    two_classes = answer([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1]], ["b", "a", "a"])
    assert "probabilities_2" in frames.result_frame(rows, two_classes, classes=None).columns
    named = frames.result_frame(rows, two_classes, classes=["a", "b", "c"])
    assert "probability_c" in named.columns
    # A label that is not the argmax's class: no names are guessed.
    thresholded = answer([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]], ["b", "c", "b"])
    assert "probabilities_0" in frames.result_frame(rows, thresholded, classes=None).columns
    with pytest.raises(ValueError, match="classes"):
        frames.result_frame(rows, every_class, classes=["a", "b"])


def test_a_percent_alone_changes_only_the_share_of_the_split() -> None:
    request = update(canary_percent=0)
    assert list(request.update_mask.paths) == ["canary.percent"]
    assert request.deployment.canary.percent == 0 and not request.deployment.canary.HasField("target")
    assert list(update(shadow_percent=25).update_mask.paths) == ["shadow.percent"]
    with pytest.raises(ValueError, match="not both"):
        update(canary=(2, 10), canary_percent=0)
