"""UploadDataset, versions, reads and deletes through the real server, on both backends."""

from __future__ import annotations

import hashlib
import io
import json

import grpc
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.testing import Ingest, csv_bytes, rpc_error, upload_requests


def test_chunked_csv_upload_makes_a_profiled_version_readable_from_the_store(ingest: Ingest) -> None:
    data = csv_bytes(1000)
    version = ingest.upload("penguins", data, chunk_size=7_000, description="first", labels={"team": "risk"})

    assert version.name == "datasets/penguins/versions/1"
    assert version.version == 1
    assert version.sha256 == hashlib.sha256(data).hexdigest()
    assert version.row_count == 1000
    assert version.uri.endswith("datasets/penguins/versions/1/data.parquet")
    assert version.lineage.source_format == pb.DATA_FORMAT_CSV
    assert [(f.name, f.type, f.nullable) for f in version.schema.fields] == [
        ("id", "int64", False),
        ("score", "double", True),
        ("kind", "string", False),
        ("flag", "bool", False),
    ]
    # Standard tools read the canonical Parquet straight from the store.
    fs, path = ingest.filesystem_path(version.uri)
    assert fs.get_file_info(path).size == version.size_bytes
    stored = ingest.read_from_store(version.uri).to_pandas()
    pd.testing.assert_frame_equal(stored, pd.read_csv(io.BytesIO(data)), check_dtype=False)
    with fs.open_input_stream(path.replace("data.parquet", "profile.json")) as profile_file:
        assert json.loads(profile_file.read())["row_count"] == 1000

    dataset = ingest.stub.GetDataset(pb.GetDatasetRequest(name="datasets/penguins"))
    assert (dataset.latest_version, dataset.description, dict(dataset.labels)) == (1, "first", {"team": "risk"})


def test_same_bytes_or_same_request_id_return_the_existing_version(ingest: Ingest) -> None:
    data = csv_bytes(200)
    first = ingest.upload("penguins", data, request_id="req-1")
    assert ingest.upload("penguins", data, chunk_size=1_000).name == first.name
    # The same request id answers with its version, whatever follows the header.
    assert ingest.upload("penguins", csv_bytes(300), request_id="req-1").name == first.name
    second = ingest.upload("penguins", csv_bytes(300))
    assert second.version == 2
    # The same bytes in another dataset are another dataset's version.
    assert ingest.upload("gulls", data).name == "datasets/gulls/versions/1"

    versions = ingest.stub.ListDatasetVersions(pb.ListDatasetVersionsRequest(parent="datasets/penguins"))
    assert [v.version for v in versions.dataset_versions] == [2, 1]
    latest = ingest.stub.GetDatasetVersion(pb.GetDatasetVersionRequest(name="datasets/penguins/versions/latest"))
    assert latest.version == 2 and latest.row_count == 300


def test_parquet_is_stored_byte_for_byte_and_jsonl_is_converted(ingest: Ingest) -> None:
    table = pa.table({"x": [1.5, 2.5, None, 4.0], "name": ["a", "b", "c", None], "n": [1, 2, 3, 4]})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    source = sink.getvalue()
    version = ingest.upload("tiny", source, "parquet", chunk_size=100)
    assert version.row_count == 4
    assert version.sha256 == hashlib.sha256(source).hexdigest()
    assert ingest.read(version.name) == source

    lines = b"".join(json.dumps({"a": i, "b": f"s{i}", "c": i / 2}).encode() + b"\n" for i in range(50))
    jsonl = ingest.upload("tiny-json", lines, "jsonl", chunk_size=99)
    assert jsonl.row_count == 50
    assert [(f.name, f.type) for f in jsonl.schema.fields] == [("a", "int64"), ("b", "string"), ("c", "double")]
    assert ingest.read_table(jsonl.name).column("b").to_pylist()[:2] == ["s0", "s1"]


def test_read_back_as_parquet_or_csv_with_a_column_subset(ingest: Ingest) -> None:
    data = csv_bytes(5000)
    version = ingest.upload("penguins", data)
    expected = pd.read_csv(io.BytesIO(data))

    whole = ingest.read_table(version.name).to_pandas()
    pd.testing.assert_frame_equal(whole, expected, check_dtype=False)
    subset = ingest.read_table(version.name, columns=["kind", "id"]).to_pandas()
    pd.testing.assert_frame_equal(subset, expected[["kind", "id"]], check_dtype=False)
    as_csv = pd.read_csv(io.BytesIO(ingest.read(version.name, fmt="csv", columns=["id", "score"])))
    pd.testing.assert_frame_equal(as_csv, expected[["id", "score"]], check_dtype=False)

    error = rpc_error(ingest.read, version.name, columns=["nope"])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in error.details()
    error = rpc_error(ingest.read, version.name, split="train")
    assert error.code() == grpc.StatusCode.NOT_FOUND and "'train'" in error.details()


def test_delete_removes_the_version_and_its_objects_and_never_reuses_the_number(ingest: Ingest) -> None:
    first = ingest.upload("penguins", csv_bytes(10))
    ingest.stub.DeleteDatasetVersion(pb.DeleteDatasetVersionRequest(name=first.name))

    error = rpc_error(ingest.stub.GetDatasetVersion, pb.GetDatasetVersionRequest(name=first.name))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    fs, path = ingest.filesystem_path(first.uri)
    assert fs.get_file_info(path).type.name == "NotFound"
    error = rpc_error(ingest.stub.DeleteDatasetVersion, pb.DeleteDatasetVersionRequest(name=first.name))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # Deleted content uploaded again is a new version with a new number.
    again = ingest.upload("penguins", csv_bytes(10))
    assert again.version == 2
    assert ingest.stub.GetDataset(pb.GetDatasetRequest(name="datasets/penguins")).latest_version == 2


def test_list_datasets_pages_and_filters_by_label(ingest: Ingest) -> None:
    for name, team in (("alpha", "risk"), ("beta", "ops"), ("gamma", "risk")):
        ingest.upload(name, csv_bytes(5), labels={"team": team})
    first = ingest.stub.ListDatasets(pb.ListDatasetsRequest(page_size=2))
    assert [d.name for d in first.datasets] == ["datasets/alpha", "datasets/beta"]
    rest = ingest.stub.ListDatasets(pb.ListDatasetsRequest(page_size=2, page_token=first.next_page_token))
    assert [d.name for d in rest.datasets] == ["datasets/gamma"] and not rest.next_page_token
    risk = ingest.stub.ListDatasets(pb.ListDatasetsRequest(filter="labels.team=risk"))
    assert [d.name for d in risk.datasets] == ["datasets/alpha", "datasets/gamma"]


# ------------------------------------------------------------------------ bad input


def _upload_error(ingest: Ingest, requests: list[pb.UploadDatasetRequest]) -> grpc.RpcError:
    return rpc_error(ingest.stub.UploadDataset, iter(requests), timeout=30)


def _header(dataset_id: str = "penguins", fmt: int = pb.DATA_FORMAT_CSV) -> pb.UploadDatasetRequest:
    return pb.UploadDatasetRequest(header=pb.UploadDatasetHeader(dataset_id=dataset_id, format=fmt))


def test_malformed_csv_names_the_line(ingest: Ingest) -> None:
    data = b"a,b,c\n1,2,3\n4,5,6\n7,8\n9,10,11\n"
    error = _upload_error(ingest, list(upload_requests("penguins", data, chunk_size=4)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "line 4" in error.details() and "expected 3 fields, got 2" in error.details()
    # Deep into a large file, and after the types were inferred from the start.
    big = csv_bytes(20_000) + b"1,2,3\n"
    error = _upload_error(ingest, list(upload_requests("penguins", big)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "line 20002" in error.details()
    assert rpc_error(ingest.stub.GetDataset, pb.GetDatasetRequest(name="datasets/penguins")).code() == (
        grpc.StatusCode.NOT_FOUND
    )


@pytest.mark.parametrize("data", [b"", b"   \n\n"])
def test_empty_file_is_invalid(ingest: Ingest, data: bytes) -> None:
    error = _upload_error(ingest, list(upload_requests("penguins", data)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in error.details()


def test_header_only_and_non_parquet_files_are_invalid(ingest: Ingest) -> None:
    error = _upload_error(ingest, list(upload_requests("penguins", b"a,b\n")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "no data rows" in error.details()
    error = _upload_error(ingest, list(upload_requests("penguins", b"a,b\n1,2\n", "parquet")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a Parquet file" in error.details()
    error = _upload_error(ingest, list(upload_requests("penguins", b'{"a": 1}\n{"a": "x"}\n', "jsonl")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "line 2" in error.details()


@pytest.mark.parametrize("dataset_id", ["pen/guins", "..", "a/../b", "Penguins", "", "-x"])
def test_bad_dataset_ids_are_invalid(ingest: Ingest, dataset_id: str) -> None:
    error = _upload_error(ingest, [_header(dataset_id), pb.UploadDatasetRequest(chunk=b"a\n1\n")])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "header.dataset_id" in error.details() and repr(dataset_id) in error.details()


def test_header_must_come_first_and_only_once(ingest: Ingest) -> None:
    error = _upload_error(ingest, [pb.UploadDatasetRequest(chunk=b"a,b\n1,2\n")])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in error.details()
    error = _upload_error(ingest, [])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in error.details()
    error = _upload_error(ingest, [_header(), pb.UploadDatasetRequest(chunk=b"a,b\n1,2\n"), _header()])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "message 3" in error.details()
    error = _upload_error(ingest, [_header(fmt=pb.DATA_FORMAT_UNSPECIFIED), pb.UploadDatasetRequest(chunk=b"a\n1\n")])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "header.format" in error.details()


def test_unknown_dataset_or_version_is_not_found(ingest: Ingest) -> None:
    ingest.upload("penguins", csv_bytes(5))
    error = rpc_error(ingest.stub.GetDataset, pb.GetDatasetRequest(name="datasets/nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "'nope'" in error.details()
    error = rpc_error(ingest.stub.GetDatasetVersion, pb.GetDatasetVersionRequest(name="datasets/penguins/versions/7"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "version 7" in error.details() and "latest is 1" in error.details()
    error = rpc_error(ingest.stub.GetProfile, pb.GetProfileRequest(name="datasets/nope/versions/latest"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(ingest.stub.ListDatasetVersions, pb.ListDatasetVersionsRequest(parent="datasets/nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(ingest.stub.GetDatasetVersion, pb.GetDatasetVersionRequest(name="datasets/penguins/versions/x"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "'x'" in error.details()
