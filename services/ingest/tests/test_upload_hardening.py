"""Issue 7, uploads: bad CSV / JSON Lines end in INVALID_ARGUMENT naming the line or field.

Each case was once accepted wrongly, refused wrongly, or ended in INTERNAL. A refused
upload must leave no dataset, no version and no object behind. The server here infers
column types from the smallest window allowed (64 KiB), so a few hundred KB pass it.
"""

from __future__ import annotations

import json
import random

import grpc
import pyarrow.fs as pafs
import pytest

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.scan import CsvScan
from ferry_ingest.testing import FORMATS, Ingest, rpc_error, upload_requests

INFER_BYTES = 65_536


@pytest.fixture
def ingest_env() -> dict[str, str]:
    return {"FERRY_INGEST_INFER_BYTES": str(INFER_BYTES)}


def refused(ingest: Ingest, data: bytes, fmt: str = "csv", *, delimiter: str = "", chunk_size: int = 64 * 1024) -> str:
    """Upload ``data`` as dataset ``bad``; assert INVALID_ARGUMENT and that nothing was kept."""
    header = pb.UploadDatasetHeader(dataset_id="bad", format=FORMATS[fmt], csv=pb.CsvOptions(delimiter=delimiter))
    chunks = list(upload_requests("bad", data, fmt, chunk_size))[1:]
    error = rpc_error(ingest.stub.UploadDataset, iter([pb.UploadDatasetRequest(header=header), *chunks]), timeout=60)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    missing = rpc_error(ingest.stub.GetDataset, pb.GetDatasetRequest(name="datasets/bad"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    fs, path = ingest.filesystem_path(f"{ingest.settings.object_store_url}/datasets/bad")
    assert fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True)) == []
    return str(error.details())


def rows(count: int, start: int = 0) -> bytes:
    """``id,n,name`` rows of about 25 bytes: row 5000 lies past the 64 KiB window."""
    return b"".join(f"{i},{i * 7},name-{i:06d}\n".encode() for i in range(start, start + count))


# --- CSV quoting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'a,b\n1,2\n3,"4\n5,6,7,8\n',  # in the last column: the rest of the file became one value
        b'a,b\n1,2\n"3,4\n5,6\n',  # in the first column
        b'a,b\r\n1,2\r\n3,"4\r\n5,6\r\n',  # CRLF line ends
        b'a,b\n1,2\n3,"4',  # no newline at the end: was read as the integer 4
    ],
)
def test_csv_quote_never_closed_is_refused_with_the_line_it_opened_on(ingest: Ingest, data: bytes) -> None:
    details = refused(ingest, data, chunk_size=3)
    assert "chunk: malformed CSV at line 3: quote opened here is never closed" in details


def test_csv_quote_never_closed_deep_in_a_large_file_names_its_line(ingest: Ingest) -> None:
    data = b"id,n,name\n" + rows(20_000) + b'20000,1,"never closed\n' + rows(100, 20_001)
    assert "line 20002: quote opened here is never closed" in refused(ingest, data)


def test_csv_quoted_newlines_and_doubled_quotes_are_values(ingest: Ingest) -> None:
    data = b'a,b\n1,"x\ny"\n2,"say ""hi"", then\n""bye"""\n3,5\'11"\n'
    version = ingest.upload("quotes", data, chunk_size=5)
    assert version.row_count == 3
    table = ingest.read_table(version.name)
    assert table.column("b").to_pylist() == ["x\ny", 'say "hi", then\n"bye"', "5'11\""]


def test_csv_quote_scan_follows_arrow_quoting_rules() -> None:
    """CsvScan, fed in random pieces, against Arrow's parser rules written byte by byte."""

    def open_quote_at_end(data: bytes) -> int | None:
        state, opened, i = "start", None, 3 if data.startswith(b"\xef\xbb\xbf") else 0
        while i < len(data):
            c = data[i : i + 1]
            if state == "start":
                state, opened = ("quoted", i) if c == b'"' else ("start" if c in b",\n\r" else "field", opened)
            elif state == "field" and c in b",\n\r":
                state = "start"
            elif state == "quoted" and c == b'"':
                if data[i + 1 : i + 2] == b'"':
                    i += 1
                else:
                    state = "field"
            i += 1
        return opened if state == "quoted" else None

    rng = random.Random(7)
    alphabet = [b"a", b",", b'"', b'"', b"\n", b"\r", b"1"]
    for _ in range(3000):
        data = (b"\xef\xbb\xbf" if rng.random() < 0.1 else b"") + b"".join(
            rng.choice(alphabet) for _ in range(rng.randint(0, 60))
        )
        scan, position = CsvScan(","), 0
        while position < len(data):
            step = rng.randint(1, 9)
            scan.feed(data[position : position + step])
            position += step
        scan.feed(b"")
        expected = open_quote_at_end(data)
        assert scan.open_quote == expected, data


# --- CSV types past the inference window ----------------------------------------------


def test_csv_integer_column_meeting_a_fraction_after_the_window_becomes_double(ingest: Ingest) -> None:
    data = b"id,n,name\n" + rows(5000) + b"5000,1.5,late\n" + rows(1000, 5001)
    assert len(data) > 2 * INFER_BYTES
    version = ingest.upload("late-fraction", data)
    assert version.row_count == 6001
    assert [(f.name, f.type) for f in version.schema.fields] == [("id", "int64"), ("n", "double"), ("name", "string")]
    n = ingest.read_table(version.name).column("n").to_pylist()
    assert n[4999:5002] == [4999 * 7, 1.5, 5001 * 7]


def test_csv_numeric_column_meeting_text_after_the_window_becomes_string(ingest: Ingest) -> None:
    # Past Arrow's first 256 KiB block too, so it is met while streaming, not when opening.
    data = b"id,n,name\n" + rows(15_000) + b"15000,abc,late\n" + rows(1000, 15_001)
    version = ingest.upload("late-text", data)
    assert [(f.name, f.type) for f in version.schema.fields] == [("id", "int64"), ("n", "string"), ("name", "string")]
    n = ingest.read_table(version.name).column("n").to_pylist()
    assert n[:2] == ["0", "7"] and n[15_000] == "abc" and len(n) == 16_001


def test_csv_error_after_the_window_names_its_line(ingest: Ingest) -> None:
    data = b"id,n,name\n" + rows(5000) + b"5000,1,bad \xff byte\n" + rows(10, 5001)
    assert "chunk: malformed CSV at line 5002: invalid UTF-8" in refused(ingest, data)


# --- CSV delimiter, header only, BOM, CRLF, NUL -----------------------------------------


@pytest.mark.parametrize("delimiter", ["é", ";;", '"', "\n"])
def test_csv_delimiter_that_is_not_one_ascii_character_is_invalid(ingest: Ingest, delimiter: str) -> None:
    details = refused(ingest, b"a,b\n1,2\n", delimiter=delimiter)
    assert details.startswith("header.csv.delimiter: ") and repr(delimiter) in details


def test_csv_with_only_a_header_is_refused(ingest: Ingest) -> None:
    assert "chunk: the file has no data rows" in refused(ingest, b"a,b\r\n")


def test_csv_with_a_bom_and_crlf_line_ends_is_read_as_written(ingest: Ingest) -> None:
    version = ingest.upload("bom", b'\xef\xbb\xbf"a",b\r\n1,"x\r\ny"\r\n2,z\r\n', chunk_size=2)
    assert [f.name for f in version.schema.fields] == ["a", "b"]
    assert ingest.read_table(version.name).to_pydict() == {"a": [1, 2], "b": ["x\r\ny", "z"]}


@pytest.mark.parametrize(("data", "line"), [(b"a,b\n1,2\n3,x\x00y\n", 3), ("a,b\n1,2\n3,4\n".encode("utf-16-le"), 1)])
def test_csv_nul_byte_is_refused_with_its_line(ingest: Ingest, data: bytes, line: int) -> None:
    details = refused(ingest, data)
    assert f"chunk: malformed CSV at line {line}: NUL byte" in details


# --- JSON Lines -------------------------------------------------------------------------


@pytest.mark.parametrize("big", ["12345678901234567890123", "-9223372036854775809", "9" * 5000])
def test_jsonl_integer_beyond_int64_is_refused_with_its_line_and_field(ingest: Ingest, big: str) -> None:
    data = f'{{"a": 1, "b": "x"}}\n{{"a": {big}, "b": "y"}}\n'.encode()
    details = refused(ingest, data, "jsonl")
    assert "chunk: malformed JSON Lines at line 2: field 'a' holds the integer" in details
    assert "beyond int64" in details and len(details) < 300


def test_jsonl_integer_beyond_int64_after_the_window_is_refused(ingest: Ingest) -> None:
    lines = [json.dumps({"a": i, "id": str(10**20 + i), "f": i / 7}) for i in range(20_000)]
    lines[15_000] = json.dumps({"a": 1, "id": "x", "f": 0.5, "deep": [{"n": 10**22}]})
    details = refused(ingest, ("\n".join(lines) + "\n").encode(), "jsonl")
    assert "line 15001: field 'deep[0].n' holds the integer 10000000000000000000000" in details


def test_jsonl_int64_bounds_and_long_digit_strings_are_kept(ingest: Ingest) -> None:
    data = b'{"a": 9223372036854775807, "s": "123456789012345678901234567890"}\n{"a": -9223372036854775808}\n'
    version = ingest.upload("bounds", data, "jsonl")
    assert ingest.read_table(version.name).column("a").to_pylist() == [2**63 - 1, -(2**63)]


def test_jsonl_objects_without_any_field_are_refused(ingest: Ingest) -> None:
    details = refused(ingest, b"\n{}\n{}\n", "jsonl")
    assert "chunk: malformed JSON Lines at line 2: no row has a field" in details


def test_jsonl_nested_too_deeply_is_invalid_not_internal(ingest: Ingest) -> None:
    deep = b'{"a": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}\n"
    assert "chunk: malformed JSON Lines at line 2: JSON nested too deeply" in refused(
        ingest, b'{"a": [1]}\n' + deep, "jsonl"
    )
