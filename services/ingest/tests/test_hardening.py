"""Regression tests of issue 7: bad input found by probing ingest as an outsider.

Each case once ended in INTERNAL or was wrongly accepted; each must now be
INVALID_ARGUMENT naming the field, and leave no dataset or version behind.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.testing import Ingest, csv_bytes, rpc_error, upload_requests

Step = pb.RecipeStep


def token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def invalid(error: grpc.RpcError, field: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert field in error.details(), error.details()
    assert len(error.details()) < 1000


@pytest.fixture
def source(ingest: Ingest) -> str:
    return ingest.upload("penguins", csv_bytes(50)).name


@pytest.mark.parametrize("dataset_id", ["abc\n", "abc\r\n", "x" * 10_000, "é" * 5_000, "a/b", "a.b"])
def test_a_malformed_dataset_id_is_refused_and_no_folder_appears(ingest: Ingest, dataset_id: str) -> None:
    invalid(rpc_error(ingest.stub.UploadDataset, upload_requests(dataset_id, csv_bytes(5))), "header.dataset_id")
    assert not ingest.stub.ListDatasets(pb.ListDatasetsRequest()).datasets


@pytest.mark.parametrize("version", ["²", "\u0663", "\uff11", "1\n", "0", "-1", str(10**30), str(2**63), str(2**31)])
def test_only_ascii_version_numbers_in_range_are_read(ingest: Ingest, source: str, version: str) -> None:
    name = f"datasets/penguins/versions/{version}"
    invalid(rpc_error(ingest.stub.GetDatasetVersion, pb.GetDatasetVersionRequest(name=name)), "name")
    invalid(rpc_error(ingest.stub.ReadDataset, pb.ReadDatasetRequest(name=name)), "name")
    request = pb.TransformDatasetRequest(source=name, dataset_id="out", recipe=pb.Recipe())
    invalid(rpc_error(ingest.stub.TransformDataset, request), "source")
    assert [d.name for d in ingest.stub.ListDatasets(pb.ListDatasetsRequest()).datasets] == ["datasets/penguins"]


@pytest.mark.parametrize("value", [10**30, 2**63, -(2**70), [1], {"a": 1}, "x", 1.5, True])
def test_page_tokens_holding_foreign_values_are_invalid(ingest: Ingest, source: str, value: Any) -> None:
    request = pb.ListDatasetVersionsRequest(parent="datasets/penguins", page_token=token({"before": value}))
    if value is not True and not isinstance(value, str):
        invalid(rpc_error(ingest.stub.ListDatasetVersions, request), "page_token")
    bad_after = token({"after": value}) if not isinstance(value, str) else token({"after": ["x"]})
    invalid(rpc_error(ingest.stub.ListDatasets, pb.ListDatasetsRequest(page_token=bad_after)), "page_token")


@pytest.mark.parametrize(
    ("step", "field"),
    [
        (Step(filter=pb.FilterStep(column="id", operator=99, value="1")), "recipe.steps[0].filter.operator"),  # type: ignore[arg-type]
        (Step(fill_null=pb.FillNullStep(column="score", strategy=42)), "recipe.steps[0].fill_null.strategy"),  # type: ignore[arg-type]
        (Step(select=pb.SelectStep(columns=["x" * 300])), "recipe.steps[0].select.columns[0]"),
        (Step(drop=pb.DropStep(columns=["a\nb"])), "recipe.steps[0].drop.columns[0]"),
        (
            Step(filter=pb.FilterStep(column="id", operator=pb.FILTER_OPERATOR_EQ, value="1" * 20_000)),
            "recipe.steps[0].filter.value",
        ),
        (
            Step(split=pb.SplitStep(fractions=[pb.SplitFraction(name="train", fraction=1.0)], seed=-1)),
            "recipe.steps[0].split.seed",
        ),
        (
            Step(split=pb.SplitStep(fractions=[pb.SplitFraction(name="train\n", fraction=1.0)])),
            "recipe.steps[0].split.fractions[0].name",
        ),
    ],
)
def test_malformed_recipe_fields_are_invalid(ingest: Ingest, source: str, step: pb.RecipeStep, field: str) -> None:
    request = pb.TransformDatasetRequest(source=source, dataset_id="out", recipe=pb.Recipe(steps=[step]))
    invalid(rpc_error(ingest.stub.TransformDataset, request), field)
    assert [d.name for d in ingest.stub.ListDatasets(pb.ListDatasetsRequest()).datasets] == ["datasets/penguins"]


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ({"labels": {"bad key!": "x"}}, "header.labels"),
        ({"labels": {"k" * 64: "x"}}, "header.labels"),
        ({"labels": {"team": "v" * 300}}, "header.labels"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "header.labels"),
        ({"request_id": "r" * 200}, "header.request_id"),
        ({"request_id": "a b"}, "header.request_id"),
        ({"description": "d" * 10_001}, "header.description"),
    ],
)
def test_upload_header_limits(ingest: Ingest, header: dict[str, Any], field: str) -> None:
    first = pb.UploadDatasetRequest(
        header=pb.UploadDatasetHeader(dataset_id="penguins", format=pb.DATA_FORMAT_CSV, **header)
    )
    invalid(rpc_error(ingest.stub.UploadDataset, iter([first, pb.UploadDatasetRequest(chunk=csv_bytes(5))])), field)
    assert not ingest.stub.ListDatasets(pb.ListDatasetsRequest()).datasets


def test_read_columns_and_split_are_checked(ingest: Ingest, source: str) -> None:
    invalid(rpc_error(ingest.stub.ReadDataset, pb.ReadDatasetRequest(name=source, columns=["c" * 1000])), "columns[0]")
    invalid(rpc_error(ingest.stub.ReadDataset, pb.ReadDatasetRequest(name=source, split="s" * 5000)), "split")
    invalid(rpc_error(ingest.stub.GetProfile, pb.GetProfileRequest(name=source, split="train\n")), "split")


def test_a_page_token_replayed_with_another_filter_or_page_size_is_invalid(ingest: Ingest) -> None:
    for dataset_id in ("a", "b", "c"):
        ingest.upload(dataset_id, csv_bytes(5), labels={"team": "x"})
    first = ingest.stub.ListDatasets(pb.ListDatasetsRequest(page_size=1, filter="labels.team=x"))
    again = ingest.stub.ListDatasets(
        pb.ListDatasetsRequest(page_size=1, filter="labels.team=x", page_token=first.next_page_token)
    )
    assert [d.name for d in again.datasets] == ["datasets/b"]
    for request in (
        pb.ListDatasetsRequest(page_size=2, filter="labels.team=x", page_token=first.next_page_token),
        pb.ListDatasetsRequest(page_size=1, filter="labels.team=y", page_token=first.next_page_token),
    ):
        invalid(rpc_error(ingest.stub.ListDatasets, request), "page_token")
    ingest.upload("a", csv_bytes(6))
    versions = ingest.stub.ListDatasetVersions(pb.ListDatasetVersionsRequest(parent="datasets/a", page_size=1))
    other = pb.ListDatasetVersionsRequest(parent="datasets/b", page_size=1, page_token=versions.next_page_token)
    invalid(rpc_error(ingest.stub.ListDatasetVersions, other), "page_token")


@pytest.mark.parametrize(
    ("data", "fmt", "expected"),
    [
        (b"null\n", "jsonl", "line 1: expected a JSON object, got null"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "jsonl", "line 1: JSON nested"),
        (b'{"a": 1}\n{"a": ' + b"[" * 300 + b"]" * 300 + b"}\n", "jsonl", "line 2: "),
        (b"\x80id,score\n0,1.0\n", "csv", "line 1: invalid UTF-8"),
    ],
)
def test_input_that_crashed_arrow_or_the_server_is_refused(
    ingest: Ingest, data: bytes, fmt: str, expected: str
) -> None:
    """Found by the fuzz suite: Arrow segfaulted on the first two, the third was INTERNAL."""
    invalid(rpc_error(ingest.stub.UploadDataset, upload_requests("bad", data, fmt)), expected)
    assert not ingest.stub.ListDatasets(pb.ListDatasetsRequest()).datasets
    assert ingest.upload("good", csv_bytes(5)).name == "datasets/good/versions/1"  # still serving


def test_huge_values_are_echoed_short(ingest: Ingest) -> None:
    huge = "\u00e9" * 80_000
    requests = [
        pb.ImportDatasetRequest(dataset_id="x", sql=pb.SqlSource(url=huge, query="SELECT 1")),
        pb.ImportDatasetRequest(dataset_id="x", sql=pb.SqlSource(connection=huge, query="SELECT 1")),
        pb.ImportDatasetRequest(dataset_id="x", object=pb.ObjectSource(uri=huge)),
    ]
    for request in requests:
        error = rpc_error(ingest.stub.ImportDataset, request)
        assert error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
        assert len(error.details().encode()) < 1000
    header = pb.UploadDatasetHeader(dataset_id="x", format=pb.DATA_FORMAT_CSV, csv=pb.CsvOptions(delimiter=huge))
    error = rpc_error(ingest.stub.UploadDataset, iter([pb.UploadDatasetRequest(header=header)]))
    invalid(error, "header.csv.delimiter")


def test_a_column_name_longer_than_256_characters_is_refused(ingest: Ingest) -> None:
    data = ("x" * 300 + ",b\n1,2\n").encode()
    invalid(rpc_error(ingest.stub.UploadDataset, upload_requests("wide", data)), "longer than 256")
    assert not ingest.stub.ListDatasets(pb.ListDatasetsRequest()).datasets
