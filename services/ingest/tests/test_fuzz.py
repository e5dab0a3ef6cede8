"""Property-based fuzzing of every IngestService RPC through a real server.

One ``ferry-ingest`` process per module (its real ``main()``: the ``grpc.aio`` server
with the real interceptors, on a free port, the local object store), restarted when a
call crashes it, and talked to through the generated stubs. It is seeded with a
dataset whose second version has splits, plus a directory of import sources and a
SQLite connection, so that fuzzed requests reach past validation. Two tests per RPC,
and one per format:

- ``test_malformed_requests_get_a_clean_status``: hypothesis builds requests from the
  message descriptor (see :mod:`ferry_common.fuzzing`): all sane, sane but for one bad
  field, or anything, with targeted values for names, ids, versions, page tokens,
  labels, recipes, CSV delimiters, SQL and object sources; UploadDataset gets random,
  mutated and generated file content under every format, its messages in every order;
- ``test_every_field_with_classic_bad_values``: a sane request with each field in turn
  (nested ones, recipe steps included) set to a trailing newline, 80 KB, one non-ASCII
  character, ``٣`` or 10**30 for a number, integer limits, an unknown enum number,
  NaN, bad map keys, page tokens holding what the service never issues;
- ``test_upload_of_classic_bad_files``: the files that break parsers most often (JSON
  ``null``, deep nesting, ragged CSV, truncated Parquet...) uploaded as each format.

Whatever the request:

- the status is never INTERNAL or UNKNOWN, and the call does not hang;
- the status message fits in the client's trailing metadata (no echoed 70 KB id);
- a success names resources canonically, answers about the dataset asked for, keeps
  its objects under its own version's prefix, and never imports a file from outside
  FERRY_INGEST_IMPORT_FILE_ROOTS;
- the server still answers afterwards (health check and a GetDataset), and is still running;
- a mutating call that fails leaves no trace: datasets, versions and the object
  store are exactly as before. (Versions that succeed are deleted again, so that the
  shrinker's replays meet the same state.)

Budgets (examples per RPC):

- ``pytest services/ingest/tests/test_fuzz.py``: 30, derandomized (part of ``make
  test``); ``FERRY_FUZZ_EXAMPLES=200`` raises it.
- ``pytest -m fuzz services/ingest/tests/test_fuzz.py``: the big budget, 1000 per RPC
  with a fresh random seed each run (``FERRY_FUZZ_EXAMPLES`` sets it; ``FERRY_FUZZ=1``
  runs it alongside the rest without ``-m fuzz``). A failure prints the falsifying
  request and a ``@reproduce_failure`` blob; ``.hypothesis/`` replays it next run.
"""

from __future__ import annotations

import io
import json
import pathlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import strategies as st

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry.ingest.v1 import ingest_pb2_grpc as pbg
from ferry_common import fuzzing
from ferry_common.fuzzing import OMIT, Call, ids, messages, resource_names
from ferry_ingest.testing import csv_bytes

pytestmark = pytest.mark.xdist_group("fuzz-ingest")

SERVICE = pb.DESCRIPTOR.services_by_name["IngestService"]
DATASETS = ("penguins", "derived", "fresh")
COLUMNS = ("id", "score", "kind", "flag")
SPLITS = ("train", "test")
# Read by the liveness probe; no strategy draws it, so no fuzzed call deletes it.
SENTINEL = "fuzz-sentinel-data"
# What DeleteDatasetVersion aims at (and nothing else does), so that the other targets stay
# put; its live version changes with each delete (numbers are never reused).
DOOMED: dict[str, str] = {"dataset": "doomed", "version": "1"}
# A column only the file outside the import root has: seeing it in a version is an escape.
OUTSIDE_COLUMN = "secret_outside_root"
MAX_UPLOAD_BYTES = 256 * 1024
MUTATING = {"UploadDataset", "ImportDataset", "TransformDataset", "DeleteDatasetVersion"}
DESTRUCTIVE = {"DeleteDatasetVersion"}
# Known once the server runs: the import root and the object store, as URIs.
PLACES: dict[str, str] = {"imports": "file:///nonexistent/imports/", "store": "file:///nonexistent/objects/"}


# ------------------------------------------------------------------------- sources


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


CSV = csv_bytes(40)
JSONL = b'{"a": 1, "b": "x", "c": [1, 2]}\n{"a": 2.5, "b": null, "c": []}\n{"a": 3, "b": "\\u00e9", "c": [3]}\n'
PARQUET_SEEDS = (
    _parquet(
        pa.table({"id": [1, 2, 3], "score": [0.5, None, 2.0], "kind": ["a", "b", None], "flag": [True, False, None]})
    ),
    _parquet(
        pa.table(
            {
                "u64": pa.array([2**64 - 1, 0], pa.uint64()),
                "dec": pa.array([1, 2], pa.decimal128(38, 2)),
                "lst": pa.array([[1], None], pa.list_(pa.int64())),
                "st": pa.array([{"x": 1}, None], pa.struct([("x", pa.int64())])),
                "dic": pa.array(["a", "b"]).dictionary_encode(),
                "bin": pa.array([b"\x00", None], pa.binary()),
                "day": pa.array([0, None], pa.date32()),
                "tz": pa.array([0, 1], pa.timestamp("ns", tz="Asia/Tokyo")),
                "dur": pa.array([1, None], pa.duration("s")),
                "nul": pa.array([None, None], pa.null()),
                "nan": pa.array([float("nan"), float("inf")]),
            }
        )
    ),
    _parquet(pa.Table.from_arrays([pa.array([1]), pa.array([2]), pa.array([3])], names=["a", "a", ""])),
    _parquet(pa.table({"line\nbreak": [1], "é": ["x"], " ": [None]}).slice(0, 0)),
)
SEEDS = (CSV, JSONL, *PARQUET_SEEDS)
# Files that break parsers most often, uploaded under every format by a test of their own.
CLASSIC_FILES = {
    "empty": b"",
    "one newline": b"\n",
    "a byte order mark": b"\xef\xbb\xbf",
    "invalid UTF-8": b"a,b\n\xff\xfe,1\n",
    "NUL bytes": b"a,b\n\x00,\x00\n",
    "JSON null": b"null\n",
    "JSON number": b"1\n",
    "JSON string": b'"a"\n',
    "JSON empty list": b"[]\n",
    "JSON empty object": b"{}\n",
    "JSON object then null": b'{"a": 1}\nnull\n',
    "JSON 10**30": b'{"a": 1000000000000000000000000000000}\n',
    "JSON duplicate keys": b'{"a": 1, "a": "x"}\n',
    "JSON deep nesting": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "CSV header only": b"a,b\n",
    "CSV ragged rows": b"a,b\n1\n1,2,3\n",
    "CSV unterminated quote": b'a,b\n1,"2\n',
    "CSV duplicate columns": b"a,a\n1,2\n",
    "CSV empty column name": b",b\n1,2\n",
    "CSV 10**30": b"a\n1000000000000000000000000000000\n",
    "Parquet magic only": b"PAR1",
    "Parquet magic twice": b"PAR1PAR1",
    "Parquet cut in half": PARQUET_SEEDS[0][: len(PARQUET_SEEDS[0]) // 2],
    "Parquet of exotic types": PARQUET_SEEDS[1],
    "Parquet with duplicate and empty column names": PARQUET_SEEDS[2],
    "Parquet with no rows": PARQUET_SEEDS[3],
}
CSV_DELIMITERS = (
    ",",
    ";",
    "\t",
    "|",
    " ",
    "\n",
    "\r",
    '"',
    "\x00",
    "\u00e9",
    "\u00a7",
    "\u20ac",
    "\U0001f4a5",
    "ab",
    ",,",
)


def _csv_text(header: list[str], rows: list[list[str]], delimiter: str) -> bytes:
    return "\n".join(delimiter.join(cells) for cells in [header, *rows]).encode("utf-8", "surrogatepass")


def _jsonl(values: list[Any]) -> bytes:
    return b"".join(json.dumps(value).encode() + b"\n" for value in values)


cells = st.one_of(
    st.sampled_from(
        ("1", "-1", "2.5", "", "nan", "inf", "true", "9" * 30, "1e400", '"', '"a,b"', "\u0663", "2024-01-01", "NULL")
    ),
    fuzzing.nasty_text(10),
)
contents = st.one_of(
    st.binary(max_size=512),
    fuzzing.mutated_bytes(SEEDS),
    st.integers(0, len(SEEDS) - 1).map(lambda index: SEEDS[index]),
    st.builds(
        _csv_text,
        st.lists(st.one_of(st.sampled_from(COLUMNS), fuzzing.nasty_text(12)), min_size=1, max_size=4),
        st.lists(st.lists(cells, max_size=5), max_size=6),
        st.sampled_from((",", ",", ";", "\t")),
    ),
    st.builds(
        _jsonl,
        st.lists(
            st.one_of(
                st.dictionaries(
                    st.one_of(st.sampled_from(("a", "b")), st.text(max_size=4)), fuzzing.json_values(), max_size=3
                ),
                fuzzing.json_values(),
            ),
            min_size=1,
            max_size=5,
        ),
    ),
    st.sampled_from((b"", b"\n", b"\xef\xbb\xbf", b"a\n", b"PAR1", b"PAR1PAR1", b"{}\n", b"[]\n", b"null\n")),
    st.builds(lambda: b"a,b\n" + b"1,2\n" * (MAX_UPLOAD_BYTES // 4)),  # just over the limit
)

# ---------------------------------------------------------------------- strategies
# Each field has sane values (that reach the service's logic: existing datasets and
# columns, valid recipes and sources) and nasty ones; fuzzing.messages() mixes
# whole-sane requests, requests with one bad field, and anything.

Field = fuzzing.Field
sane_datasets = st.one_of(st.sampled_from(DATASETS), st.sampled_from(DATASETS), fuzzing.valid_ids())
DATASET_ID = Field(sane_datasets, ids(DATASETS))
DATASET_NAME = Field(
    fuzzing.well_formed_names("datasets/{dataset}", dataset=sane_datasets),
    resource_names("datasets/{dataset}", dataset=ids(DATASETS)),
)
VERSION_NAME = Field(
    fuzzing.well_formed_names(
        "datasets/{dataset}/versions/{version}",
        dataset=st.just("penguins"),
        version=st.sampled_from(("1", "2", "3", "latest")),
    ),
    resource_names(
        "datasets/{dataset}/versions/{version}",
        dataset=ids(DATASETS),
        version=fuzzing.version_segments(("1", "2", "3", "latest")),
    ),
)
DESCRIPTION = Field(
    st.text(max_size=20), st.one_of(fuzzing.huge_text((9_999, 10_000, 10_001, 70_000)), fuzzing.nasty_text())
)
LABELS = Field(
    st.dictionaries(st.sampled_from(("team", "tier", "a.b")), st.sampled_from(("risk", "gold", "")), max_size=2),
    fuzzing.label_maps(),
)
REQUEST_ID = Field(
    st.sampled_from(("", "req-1", "req-2")),
    st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{127,130}", fullmatch=True), fuzzing.nasty_text()),
)
FILTER = Field(
    st.sampled_from(("", "labels.team=risk")),
    st.one_of(
        st.sampled_from(
            (
                "labels.team=",
                "labels.=x",
                "labels.team=risk AND",
                "labels.team=risk\n",
                "team=risk",
                'labels.team="a"b"',
            )
        ),
        fuzzing.nasty_text(),
    ),
)
PAGE_SIZE = Field(st.integers(0, 3), fuzzing.page_sizes())
COLUMN = Field(
    st.sampled_from(COLUMNS), st.one_of(st.sampled_from(("ID", "id ", "", "missing", "id\n")), fuzzing.nasty_text())
)
COLUMNS_LIST = Field(
    st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=3, unique=True),
    st.lists(st.one_of(COLUMN.sane, COLUMN.nasty), max_size=4),
)
VALUE = Field(
    st.sampled_from(("1", "0", "2.5", "a", "true")),
    st.one_of(
        st.sampled_from(
            (
                "",
                "nan",
                "inf",
                "-inf",
                "1e400",
                "9" * 30,
                "\u0661\u0662",
                "\u00b2",
                "2024-13-45",
                "null",
                " 1",
                "0x10",
                "true\n",
            )
        ),
        fuzzing.nasty_text(),
    ),
)
SPLIT = Field(
    st.sampled_from(("", *SPLITS)),
    st.one_of(st.sampled_from(("nope", "TRAIN", "train\n", "../x")), fuzzing.nasty_text()),
)
SANE_FRACTIONS = st.sampled_from(
    (
        (("train", 0.8), ("test", 0.2)),
        (("a", 0.5), ("b", 0.5)),
        (("all", 1.0),),
        (("train", 0.7), ("validation", 0.1), ("test", 0.2)),
    )
).map(lambda parts: [pb.SplitFraction(name=name, fraction=fraction) for name, fraction in parts])
NASTY_FRACTIONS = st.lists(
    messages(
        pb.SplitFraction,
        {
            "name": Field(
                st.sampled_from(("train", "test")),
                st.one_of(st.sampled_from(("", "Train", "../x", "a/b", "train\n", ".", "..")), fuzzing.nasty_text()),
            ),
            "fraction": Field(
                st.sampled_from((0.5, 0.8, 0.2)),
                st.one_of(
                    st.sampled_from((0.0, 1.0, -0.1, 1.5, 1e-300, float("nan"), float("inf"))), fuzzing.nasty_doubles()
                ),
            ),
        },
    ),
    max_size=4,
)
CAST_TYPE = Field(
    st.sampled_from(("int64", "int32", "double", "float", "string", "bool", "timestamp")),
    st.one_of(
        st.sampled_from(("INT64", " int64 ", "decimal", "date", "list<int64>", "timestamp[ns]", "")),
        fuzzing.nasty_text(),
    ),
)


def recipe_step_fields(prefix: str) -> dict[str, Field]:
    """The fields of one RecipeStep (its oneof members), under ``prefix``."""
    fields = {
        "select.columns": COLUMNS_LIST,
        "drop.columns": COLUMNS_LIST,
        "rename.columns": Field(
            st.dictionaries(st.sampled_from(COLUMNS), st.sampled_from(("new", "renamed")), max_size=1),
            st.dictionaries(st.one_of(COLUMN.sane, COLUMN.nasty), st.one_of(COLUMN.sane, COLUMN.nasty), max_size=3),
        ),
        "filter.column": COLUMN,
        "filter.operator": Field(st.integers(1, 9), fuzzing.enum_numbers(pb.FilterOperator.DESCRIPTOR)),
        "filter.value": VALUE,
        "filter.values": Field(
            st.lists(VALUE.sane, max_size=3), st.lists(st.one_of(VALUE.sane, VALUE.nasty), max_size=3)
        ),
        "fill_null.column": COLUMN,
        "fill_null.strategy": Field(st.integers(0, 4), fuzzing.enum_numbers(pb.FillStrategy.DESCRIPTOR)),
        "fill_null.value": VALUE,
        "cast.column": COLUMN,
        "cast.type": CAST_TYPE,
        "deduplicate.columns": Field(st.lists(st.sampled_from(COLUMNS), max_size=2, unique=True), COLUMNS_LIST.nasty),
        "split.fractions": Field(SANE_FRACTIONS, NASTY_FRACTIONS),
        "split.seed": Field(st.integers(0, 10), fuzzing.int_values(-(2**63), 2**63 - 1)),
        "split.stratify_column": Field(st.sampled_from(("", "kind", "flag")), COLUMN.nasty),
    }
    return {prefix + path: value for path, value in fields.items()}


RECIPE_STEPS = Field(
    st.lists(
        messages(pb.RecipeStep, {k: Field(v.sane, v.sane) for k, v in recipe_step_fields("").items()}), max_size=3
    ),
    st.one_of(
        st.lists(messages(pb.RecipeStep, recipe_step_fields("")), min_size=1, max_size=4),
        st.builds(
            lambda step, count: [step] * count,
            messages(pb.RecipeStep, recipe_step_fields("")),
            st.sampled_from((101, 1000)),
        ),
    ),
)
SQL_URL = Field(
    st.sampled_from(("postgresql+psycopg://reader@127.0.0.1:1/db", "mysql://reader@127.0.0.1:1/db")),
    st.one_of(
        st.sampled_from(
            (
                "nosuch://x",
                "sqlite://",
                "sqlite:///:memory:",
                "postgresql://",
                "postgresql+psycopg://u:p@/db?host=/tmp",
                "oracle://u@127.0.0.1:1/x",
                "",
            )
        ),
        st.builds(
            lambda name: "sqlite:///" + PLACES["imports"].removeprefix("file://") + name,
            st.sampled_from(("shop.db", "missing.db", "../shop.db", "shop.db?mode=ro")),
        ),
        fuzzing.nasty_text(),
    ),
)
SQL_QUERY = Field(
    st.sampled_from(
        (
            "SELECT * FROM t",
            "SELECT id, s FROM t",
            "SELECT v FROM t",
            "SELECT big FROM t",
            "SELECT 1 AS a",
            "select id from t -- c",
            "/* c */ SELECT s FROM t",
            "WITH x AS (SELECT id FROM t) SELECT * FROM x",
        )
    ),
    st.one_of(
        st.sampled_from(
            (
                "SELECT 1 AS a, 2 AS a",
                'SELECT 1 AS ""',
                "SELECT 1 WHERE 0",
                "SELECT * FROM missing",
                "DELETE FROM t",
                "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
                "SELECT 1; DROP TABLE t",
                "SELECT '%s' AS p",
                "SELECT x'00ff' AS b",
                "SELECT 9223372036854775807 + 1 AS o",
                "SELECT 1e999 AS inf",
                "SELECT load_extension('x')",
                "PRAGMA table_info(t)",
                "ATTACH 'x' AS y",
                "SELECT zeroblob(10) AS z",
                "SELECT json('[1,2]') AS j",
                "SELECT 1 UNION ALL SELECT 'a'",
                "SELECT NULL AS n",
                "",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000) SELECT x FROM c",
            )
        ),
        fuzzing.nasty_text(),
    ),
)
OBJECT_URI = Field(
    st.builds(
        lambda name: PLACES["imports"] + name,
        st.sampled_from(("data.csv", "data.jsonl", "data.parquet", "we%20ird.csv", "%C3%BC.csv")),
    ),
    st.one_of(
        st.builds(
            lambda name: PLACES["imports"] + name,
            st.sampled_from(
                (
                    "noext",
                    "bad.csv",
                    "missing.csv",
                    "../outside.csv",
                    "..%2Foutside.csv",
                    "%2e%2e/outside.csv",
                    "sub/../data.csv",
                    "",
                    "data.csv%00.txt",
                    "data.csv?x=1",
                    "data.csv#frag",
                    "./data.csv",
                    "shop.db",
                    "../state/objects/",
                    "..//outside.csv",
                )
            ),
        ),
        st.sampled_from(
            (
                "file:///etc/passwd",
                "file:///proc/self/environ",
                "file://localhost/etc/hosts",
                "file:relative.csv",
                "s3://",
                "s3://bucket",
                "s3://bucket/key.csv",
                "s3:///key.csv",
                "S3://b/k.csv",
                "http://127.0.0.1:1/x.csv",
                "ftp://x/y.csv",
            )
        ),
        fuzzing.nasty_text(),
    ),
)
FORMAT = Field(
    st.sampled_from((pb.DATA_FORMAT_CSV, pb.DATA_FORMAT_PARQUET, pb.DATA_FORMAT_JSONL)),
    fuzzing.enum_numbers(pb.DataFormat.DESCRIPTOR),
)
NEW_VERSION = {"dataset_id": DATASET_ID, "description": DESCRIPTION, "labels": LABELS, "request_id": REQUEST_ID}


def _sane_upload(
    header: pb.UploadDatasetHeader, source: tuple[int, bytes], chunks: list[bytes]
) -> tuple[pb.UploadDatasetRequest, ...]:
    header.format = source[0]  # type: ignore[assignment]
    return (pb.UploadDatasetRequest(header=header), *(pb.UploadDatasetRequest(chunk=c) for c in chunks))


def upload_streams() -> st.SearchStrategy[tuple[pb.UploadDatasetRequest, ...]]:
    """Files that match their format (sane, or with a few bytes changed), and anything in any order."""
    sane_header = st.builds(
        pb.UploadDatasetHeader,
        dataset_id=DATASET_ID.sane,
        description=DESCRIPTION.sane,
        labels=LABELS.sane,
        request_id=REQUEST_ID.sane,
    )
    formats = (pb.DATA_FORMAT_CSV, pb.DATA_FORMAT_JSONL, *(pb.DATA_FORMAT_PARQUET for _ in PARQUET_SEEDS))
    sources = st.integers(0, len(SEEDS) - 1).map(lambda index: (formats[index], SEEDS[index]))
    near = sources.flatmap(lambda source: fuzzing.mutated_bytes([source[1]]).map(lambda data: (source[0], data)))
    matching = st.one_of(sources, near).flatmap(
        lambda source: st.builds(_sane_upload, sane_header, st.just(source), fuzzing.chunked(st.just(source[1])))
    )
    header = messages(
        pb.UploadDatasetHeader,
        {
            **NEW_VERSION,
            "format": FORMAT,
            "csv.delimiter": Field(
                st.sampled_from(("", ",", ";", "\t", "|")),
                st.one_of(st.sampled_from(CSV_DELIMITERS), fuzzing.nasty_text()),
            ),
        },
    ).map(lambda h: pb.UploadDatasetRequest(header=h))
    body = fuzzing.chunked(contents).map(lambda parts: [pb.UploadDatasetRequest(chunk=p) for p in parts])
    return st.one_of(matching, fuzzing.client_streams(header, body, pb.UploadDatasetRequest()))


# The shape of each List RPC's page tokens.
TOKENS: dict[str, tuple[dict[str, Any], str]] = {"ListDatasets": ({}, "after"), "ListDatasetVersions": ({}, "before")}


def page_token(*templates: dict[str, Any], key: str) -> Field:
    return Field(st.just(""), fuzzing.page_tokens(templates, (key,)))


REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "UploadDataset": upload_streams(),
    "ImportDataset": messages(
        pb.ImportDatasetRequest,
        {
            **NEW_VERSION,
            "sql.url": Field(st.one_of(st.just(OMIT), SQL_URL.sane), SQL_URL.nasty),
            "sql.query": SQL_QUERY,
            # A named connection, where the contract has them (ignored where it has not).
            "sql.connection": Field(st.sampled_from((OMIT, "shop")), ids(("shop",))),
            "object.uri": OBJECT_URI,
            "object.format": Field(st.integers(0, 3), FORMAT.nasty),
        },
    ),
    "TransformDataset": messages(
        pb.TransformDatasetRequest,
        {
            **NEW_VERSION,
            "source": VERSION_NAME,
            "recipe.steps": RECIPE_STEPS,
        },
    ),
    "GetDataset": messages(pb.GetDatasetRequest, {"name": DATASET_NAME}),
    "ListDatasets": messages(
        pb.ListDatasetsRequest,
        {
            "page_size": PAGE_SIZE,
            "page_token": page_token({}, {"after": "penguins"}, key="after"),
            "filter": FILTER,
        },
    ),
    "GetDatasetVersion": messages(pb.GetDatasetVersionRequest, {"name": VERSION_NAME}),
    "ListDatasetVersions": messages(
        pb.ListDatasetVersionsRequest,
        {
            "parent": DATASET_NAME,
            "page_size": PAGE_SIZE,
            "page_token": page_token({}, {"before": 2}, key="before"),
        },
    ),
    "ReadDataset": messages(
        pb.ReadDatasetRequest,
        {
            "name": VERSION_NAME,
            "columns": Field(st.lists(st.sampled_from(COLUMNS), max_size=2, unique=True), COLUMNS_LIST.nasty),
            "split": SPLIT,
            "format": Field(st.sampled_from((0, pb.DATA_FORMAT_PARQUET, pb.DATA_FORMAT_CSV)), FORMAT.nasty),
        },
    ),
    "GetProfile": messages(pb.GetProfileRequest, {"name": VERSION_NAME, "split": SPLIT}),
    "DeleteDatasetVersion": messages(
        pb.DeleteDatasetVersionRequest,
        {
            "name": Field(
                st.one_of(
                    st.builds(lambda: f"datasets/{DOOMED['dataset']}/versions/{DOOMED['version']}"),
                    st.sampled_from(("datasets/doomed/versions/latest", "datasets/doomed/versions/999")),
                ),
                resource_names(
                    "datasets/{dataset}/versions/{version}",
                    dataset=ids((DOOMED["dataset"],)),
                    version=fuzzing.version_segments(("1", "2")),
                ),
            )
        },
    ),
}
CALLS, SWEEP_EXTRA = fuzzing.call_tables(REQUESTS, TOKENS)

# ------------------------------------------------------------------ response checks

NAMES = {
    "ferry.ingest.v1.Dataset.name": "datasets/{dataset}",
    "ferry.ingest.v1.DatasetVersion.name": "datasets/{dataset}/versions/{version}",
    "ferry.ingest.v1.DatasetLineage.parent": "datasets/{dataset}/versions/{version}",
    "ferry.ingest.v1.DatasetSplit.name": "{split}",
    "ferry.ingest.v1.Profile.name": "datasets/{dataset}/versions/{version}",
}


def _created(responses: tuple[Any, ...]) -> pb.DatasetVersion:
    last = responses[-1]
    return last.dataset_version if isinstance(last, pb.ImportDatasetResponse) else last


Pairs = Callable[[Any, tuple[Any, ...]], list[tuple[str, str]]]
# For each RPC, the (asked, returned) resource names a success must agree on.
SAME_RESOURCE: dict[str, Pairs] = {
    "UploadDataset": lambda q, r: [(f"datasets/{q[0].header.dataset_id}", fuzzing.parent_of(r[0].name))],
    "ImportDataset": lambda q, r: [(f"datasets/{q.dataset_id}", fuzzing.parent_of(_created(r).name))],
    "TransformDataset": lambda q, r: [
        (f"datasets/{q.dataset_id}", fuzzing.parent_of(r[0].name)),
        (q.source, r[0].lineage.parent),
    ],
    "GetDataset": lambda q, r: [(q.name, r[0].name)],
    "GetDatasetVersion": lambda q, r: [(q.name, r[0].name)],
    "ListDatasetVersions": lambda q, r: [(q.parent, fuzzing.parent_of(v.name)) for v in r[0].dataset_versions],
    "GetProfile": lambda q, r: [(q.name, r[0].name)],
}


class EscapedImportRoot(AssertionError):
    """An import read a file outside FERRY_INGEST_IMPORT_FILE_ROOTS."""


def _versions_in(responses: tuple[Any, ...]) -> Iterator[pb.DatasetVersion]:
    for response in responses:
        if isinstance(response, pb.DatasetVersion):
            yield response
        elif isinstance(response, pb.ImportDatasetResponse) and response.HasField("dataset_version"):
            yield response.dataset_version
        elif isinstance(response, pb.ListDatasetVersionsResponse):
            yield from response.dataset_versions


def check_versions(outcome: fuzzing.Outcome) -> None:
    """Objects under the version's own prefix of the store; nothing from outside the import root."""
    for version in _versions_in(outcome.responses):
        prefix = f"{PLACES['store']}{version.name}/"
        for uri in (version.uri, *(split.uri for split in version.splits)):
            if not uri.startswith(prefix) or "/../" in uri or "%2" in uri.lower():
                raise fuzzing.MalformedResponse(f"{outcome}: object {uri!r} is not under {prefix!r}")
        if any(field.name == OUTSIDE_COLUMN for field in version.schema.fields):
            raise EscapedImportRoot(f"{outcome}: {version.name} holds the file outside the import root")


# --------------------------------------------------------------------------- server


class FuzzedIngest(fuzzing.FuzzedService):
    """An ingest server seeded for fuzzing, and the property every call must satisfy."""

    stub_class = pbg.IngestServiceStub

    def __init__(self, server: fuzzing.ServerProcess, objects: pathlib.Path) -> None:
        super().__init__(server, objects, self._read)

    def probe(self) -> None:
        self.stub.GetDataset(pb.GetDatasetRequest(name=f"datasets/{SENTINEL}"), timeout=10)

    def _upload(self, dataset_id: str, data: bytes) -> pb.DatasetVersion:
        header = pb.UploadDatasetHeader(dataset_id=dataset_id, format=pb.DATA_FORMAT_CSV)
        version: pb.DatasetVersion = self.stub.UploadDataset(
            iter([pb.UploadDatasetRequest(header=header), pb.UploadDatasetRequest(chunk=data)]), timeout=60
        )
        return version

    def seed(self) -> None:
        """Create what the strategies aim at, again after a fuzzed call deleted it."""
        try:
            self.stub.GetDataset(pb.GetDatasetRequest(name=f"datasets/{SENTINEL}"), timeout=30)
        except grpc.RpcError:
            self._upload(SENTINEL, csv_bytes(3))
        request = pb.ListDatasetVersionsRequest(parent="datasets/penguins", page_size=1000)
        try:
            versions = list(self.stub.ListDatasetVersions(request, timeout=30).dataset_versions)
        except grpc.RpcError:
            versions = []
        doomed = pb.ListDatasetVersionsRequest(parent=f"datasets/{DOOMED['dataset']}")
        try:
            live = list(self.stub.ListDatasetVersions(doomed, timeout=30).dataset_versions)
        except grpc.RpcError:
            live = []
        DOOMED["version"] = str(live[0].version if live else self._upload(DOOMED["dataset"], CSV).version)
        plain = [v for v in versions if not v.splits]
        parent = plain[0] if plain else self._upload("penguins", CSV)
        if not any(v.splits for v in versions):
            fractions = [pb.SplitFraction(name="train", fraction=0.8), pb.SplitFraction(name="test", fraction=0.2)]
            recipe = pb.Recipe(steps=[pb.RecipeStep(split=pb.SplitStep(fractions=fractions, seed=1))])
            self.stub.TransformDataset(
                pb.TransformDatasetRequest(source=parent.name, dataset_id="penguins", recipe=recipe), timeout=60
            )
        self.dirty = False

    def parts(self, call: Call) -> list[str]:
        """What a call may change: the dataset list, the objects, and the datasets it names."""
        named = fuzzing.request_strings(call.request)
        datasets = [
            d
            for d in (*DATASETS, DOOMED["dataset"])
            if any(text in (d, f"datasets/{d}") or text.startswith(f"datasets/{d}/") for text in named)
        ]
        return ["datasets", "object store", *(f"datasets/{d}/versions" for d in datasets)]

    def _read(self, part: str) -> Any:
        """One part of what a caller (or a reader of the bucket) can see."""
        if part == "datasets":
            return self.listing("ListDatasets", pb.ListDatasetsRequest(page_size=1000), "datasets")
        if part == "object store":
            files = (path for path in self.objects.rglob("*") if path.is_file())
            return sorted(
                (path.relative_to(self.objects).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
                for path in files
            )
        request = pb.ListDatasetVersionsRequest(parent=part.rsplit("/", 1)[0], page_size=1000)
        return self.listing("ListDatasetVersions", request, "dataset_versions")

    def undo(self, rpc: str, responses: tuple[Any, ...], before: dict[str, Any]) -> None:
        """Delete a version the call created (not one it found again: same bytes, same request id)."""
        if rpc in DESTRUCTIVE:
            return
        known = {
            pb.DatasetVersion.FromString(item).name
            for part, items in before.items()
            if part.endswith("/versions")
            for item in items
            if isinstance(item, bytes)
        }
        for version in _versions_in(responses):
            if version.name not in known:
                try:
                    self.stub.DeleteDatasetVersion(pb.DeleteDatasetVersionRequest(name=version.name), timeout=30)
                except grpc.RpcError:
                    self.dirty = True  # whatever it left, the next seed() makes sure the targets exist

    def check(self, call: Call) -> None:
        """The property: a live server, a sane status and response, no trace of a failed change."""
        if self.dirty:
            self.seed()
            self.visible.forget()
        mutating = call.rpc in MUTATING
        before = self.visible.take(self.parts(call) if mutating else [])
        mark = self.server.log_mark()
        outcome = fuzzing.call_rpc(self.stub, SERVICE.methods_by_name[call.rpc], call.request, timeout=60)
        try:
            # First, so that the server is done with the call (its span records the error)
            # before a failure is reported.
            self.check_alive(outcome)
            fuzzing.check_outcome(outcome, server_errors=lambda: self.server.errors_since(mark))
            if outcome.code is grpc.StatusCode.OK:
                fuzzing.check_names(outcome, NAMES)
                if call.rpc in SAME_RESOURCE:
                    fuzzing.check_same_resource(outcome, SAME_RESOURCE[call.rpc](call.request, outcome.responses))
                check_versions(outcome)
            elif mutating:
                self.visible.check_unchanged(before, outcome)
        finally:
            if mutating and outcome.code is grpc.StatusCode.OK:
                # Undo creations, so that a replay by the shrinker meets the same state.
                self.undo(call.rpc, outcome.responses, before)
                self.visible.forget()
                self.dirty = self.dirty or call.rpc in DESTRUCTIVE


def _import_sources(root: pathlib.Path) -> None:
    imports = root / "imports"
    imports.mkdir()
    for name, data in (
        ("data.csv", CSV),
        ("data.jsonl", JSONL),
        ("data.parquet", PARQUET_SEEDS[0]),
        ("noext", CSV),
        ("we ird.csv", CSV),
        ("\u00fc.csv", CSV),
        ("bad.csv", b'a,b\n1,"2\n3'),
    ):
        (imports / name).write_bytes(data)
    (root / "outside.csv").write_text(f"{OUTSIDE_COLUMN}\n1\n")
    with sqlite3.connect(imports / "shop.db") as db:
        db.execute("CREATE TABLE t (id INTEGER, s TEXT, v, big INTEGER)")
        db.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            [
                (1, "a", 1, 2**63 - 1),
                (2, "\u00e9", "text", -(2**63)),
                (3, None, b"\x00\xff", 0),
                (4, "", 2.5, None),
            ],
        )
    (root / "connections.yaml").write_text("connections:\n  shop:\n    url: sqlite:///imports/shop.db\n")


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedIngest]:
    """``ferry-ingest`` in a process of its own, on the local object store."""
    root = tmp_path_factory.mktemp("ingest-fuzz")
    _import_sources(root)
    env = {
        "FERRY_STATE_DIR": str(root / "state"),
        "FERRY_LOG_LEVEL": "warning",
        "FERRY_INGEST_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "FERRY_INGEST_IMPORT_FILE_ROOTS": str(root / "imports"),
        "FERRY_INGEST_ALLOW_SQL_URLS": "true",
        "FERRY_INGEST_CONNECTIONS_FILE": str(root / "connections.yaml"),
        "FERRY_INGEST_SQL_STATEMENT_TIMEOUT_SECONDS": "10",
        # Nothing listens there: s3:// imports fail fast instead of waiting on a real endpoint.
        "FERRY_S3_ENDPOINT": "127.0.0.1:1",
    }
    objects = root / "state" / "objects"
    PLACES["imports"] = (root / "imports").resolve().as_uri() + "/"
    PLACES["store"] = objects.resolve().as_uri() + "/"
    server = fuzzing.ServerProcess("ferry_ingest", "ingest", env, root / "server.log")
    server.start()
    try:
        fuzzed = FuzzedIngest(server, objects)
        fuzzed.seed()
        yield fuzzed
        fuzzed.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fuzzed(ingest: FuzzedIngest) -> FuzzedIngest:
    return ingest


# The tests every fuzzed service runs (ferry_common.fuzzing.rpc_tests), then this service's own.
globals().update(fuzzing.rpc_tests(CALLS, SERVICE.methods_by_name, SWEEP_EXTRA))

# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "fmt", [pb.DATA_FORMAT_CSV, pb.DATA_FORMAT_JSONL, pb.DATA_FORMAT_PARQUET], ids=["csv", "jsonl", "parquet"]
)
def test_upload_of_classic_bad_files(ingest: FuzzedIngest, fmt: int) -> None:
    """Each of the files that break parsers most often, uploaded as ``fmt``."""
    header = pb.UploadDatasetHeader(dataset_id="derived", format=fmt)  # type: ignore[arg-type]
    calls = (
        (label, Call("UploadDataset", (pb.UploadDatasetRequest(header=header), pb.UploadDatasetRequest(chunk=data))))
        for label, data in CLASSIC_FILES.items()
    )
    fuzzing.assert_all_clean(ingest, calls)
