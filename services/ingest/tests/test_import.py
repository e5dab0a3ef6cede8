"""ImportDataset: from a real PostgreSQL table (read-only) and from object URIs.

The server here opts in to what is off by default (raw SQL URLs, file imports under
the test's directory, a landing bucket); test_import_security.py checks the defaults.
"""

from __future__ import annotations

import io
import pathlib
import uuid

import grpc
import pandas as pd
import psycopg
import pytest
from minio import Minio

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.testing import Ingest, csv_bytes, rpc_error

LANDING_BUCKET = f"landing-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ingest_env(tmp_path: pathlib.Path) -> dict[str, str]:
    connections = tmp_path / "connections.yaml"
    connections.write_text(f"connections:\n  shop:\n    url: sqlite:///{tmp_path / 'shop.db'}\n")
    return {
        "FERRY_INGEST_ALLOW_SQL_URLS": "true",
        "FERRY_INGEST_IMPORT_FILE_ROOTS": str(tmp_path),
        "FERRY_INGEST_IMPORT_S3_BUCKETS": LANDING_BUCKET,
        "FERRY_INGEST_CONNECTIONS_FILE": str(connections),
    }


def _import(ingest: Ingest, request: pb.ImportDatasetRequest) -> tuple[list[pb.ImportProgress], pb.DatasetVersion]:
    events = list(ingest.stub.ImportDataset(request, timeout=120))
    assert events and events[-1].WhichOneof("result") == "dataset_version"
    assert all(e.WhichOneof("result") == "progress" for e in events[:-1])
    return [e.progress for e in events[:-1]], events[-1].dataset_version


@pytest.fixture
def orders(postgres_url: str) -> str:
    """A PostgreSQL table ``orders`` of 30,000 rows; returns the SQLAlchemy URL."""
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12, 2), "
            "paid boolean, placed timestamptz, note text)"
        )
        connection.execute(
            "INSERT INTO orders SELECT g, 'c' || (g % 97), g * 1.25, g % 3 = 0, "
            "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', "
            "CASE WHEN g % 10 = 0 THEN NULL ELSE '100%' END FROM generate_series(1, 30000) g"
        )
    return postgres_url


def _count(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        row = connection.execute("SELECT count(*) FROM orders").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.postgres
def test_sql_import_streams_a_postgres_table_into_a_version(ingest: Ingest, orders: str) -> None:
    query = "SELECT * FROM orders WHERE note LIKE '100%' OR note IS NULL ORDER BY id"
    request = pb.ImportDatasetRequest(dataset_id="orders", sql=pb.SqlSource(url=orders, query=query))
    progress, version = _import(ingest, request)

    assert version.row_count == 30000
    assert [(f.name, f.type) for f in version.schema.fields] == [
        ("id", "int64"),
        ("customer", "string"),
        ("amount", "double"),
        ("paid", "bool"),
        ("placed", "timestamp[us, tz=UTC]"),
        ("note", "string"),
    ]
    assert version.lineage.source_query == query
    assert "ferry:" not in version.lineage.source_uri  # the password is not recorded
    assert progress and progress[-1].rows == 30000
    table = ingest.read_from_store(version.uri).to_pandas()
    assert table["id"].tolist() == list(range(1, 30001))
    assert table["amount"].iloc[-1] == 37500.0 and table["note"].isna().sum() == 3000

    # The same rows again are the same content: the existing version comes back.
    assert _import(ingest, request)[1].name == version.name


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM orders",
        "UPDATE orders SET paid = true",
        "DROP TABLE orders",
        "SELECT 1; DELETE FROM orders",
        "",
        "-- SELECT\n INSERT INTO orders VALUES (0)",
    ],
)
def test_non_select_queries_are_refused_before_connecting(ingest: Ingest, query: str) -> None:
    # An unreachable URL proves the refusal comes first: no connection is attempted.
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    request = pb.ImportDatasetRequest(dataset_id="orders", sql=pb.SqlSource(url=url, query=query))
    error = rpc_error(ingest.stub.ImportDataset, request, timeout=30)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("sql.query")


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone", "data-modifying"),
        ("SELECT nextval('audit_seq')", "read-only transaction"),
        ("WITH x AS (SELECT 1) SELECT * INTO copied FROM orders", "INTO"),
    ],
)
def test_writes_hidden_in_a_select_are_refused_and_change_nothing(
    ingest: Ingest, orders: str, query: str, message: str
) -> None:
    with psycopg.connect(orders.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute("CREATE SEQUENCE IF NOT EXISTS audit_seq")
    request = pb.ImportDatasetRequest(dataset_id="orders", sql=pb.SqlSource(url=orders, query=query))
    error = rpc_error(ingest.stub.ImportDataset, request, timeout=30)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details(), error.details()
    assert _count(orders) == 30000
    dsn = orders.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as connection:
        assert connection.execute("SELECT to_regclass('copied')").fetchone() == (None,)


def test_sql_import_from_sqlite_and_bad_urls(ingest: Ingest, tmp_path: pathlib.Path) -> None:
    import sqlite3

    database = tmp_path / "shop.db"  # the operator's connection "shop"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE items (sku TEXT, price REAL, qty INTEGER)")
        connection.executemany("INSERT INTO items VALUES (?, ?, ?)", [(f"s{i}", i / 4, i % 5) for i in range(2500)])
    sql = pb.SqlSource(connection="shop", query="SELECT sku, price, qty FROM items WHERE qty > 0")
    _, version = _import(ingest, pb.ImportDatasetRequest(dataset_id="items", sql=sql))
    assert version.row_count == 2000
    assert [f.type for f in version.schema.fields] == ["string", "double", "int64"]
    assert version.lineage.source_uri == "connection:shop"

    bad = pb.ImportDatasetRequest(dataset_id="items", sql=pb.SqlSource(url="not a url", query="SELECT 1"))
    assert rpc_error(ingest.stub.ImportDataset, bad).code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = pb.ImportDatasetRequest(
        dataset_id="items", sql=pb.SqlSource(connection="shop", query="SELECT * FROM nope")
    )
    error = rpc_error(ingest.stub.ImportDataset, missing)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in error.details()
    assert rpc_error(ingest.stub.ImportDataset, pb.ImportDatasetRequest(dataset_id="items")).code() == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_object_import_from_a_file_uri_and_from_the_bucket(ingest: Ingest, tmp_path: pathlib.Path) -> None:
    data = csv_bytes(3000)
    source = tmp_path / "orders.csv"
    source.write_bytes(data)
    request = pb.ImportDatasetRequest(dataset_id="orders", object=pb.ObjectSource(uri=source.as_uri()))
    _, version = _import(ingest, request)
    assert version.row_count == 3000 and version.lineage.source_uri == source.as_uri()
    pd.testing.assert_frame_equal(
        ingest.read_table(version.name).to_pandas(), pd.read_csv(io.BytesIO(data)), check_dtype=False
    )

    error = rpc_error(
        ingest.stub.ImportDataset,
        pb.ImportDatasetRequest(dataset_id="orders", object=pb.ObjectSource(uri=(tmp_path / "nope.csv").as_uri())),
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and "nope.csv" in error.details()
    (tmp_path / "orders.txt").write_bytes(data)
    error = rpc_error(
        ingest.stub.ImportDataset,
        pb.ImportDatasetRequest(dataset_id="orders", object=pb.ObjectSource(uri=(tmp_path / "orders.txt").as_uri())),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "object.format" in error.details()

    if ingest.backend == "s3":
        s3 = ingest.settings.s3
        bucket = LANDING_BUCKET
        client = Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False)
        client.make_bucket(bucket)
        client.put_object(bucket, "drop/orders.csv", io.BytesIO(data), len(data))
        uri = f"s3://{bucket}/drop/orders.csv"
        _, again = _import(ingest, pb.ImportDatasetRequest(dataset_id="orders", object=pb.ObjectSource(uri=uri)))
        assert again.name == version.name  # the same bytes: the existing version
        missing = pb.ImportDatasetRequest(dataset_id="orders", object=pb.ObjectSource(uri=f"s3://{bucket}/no.csv"))
        assert rpc_error(ingest.stub.ImportDataset, missing).code() == grpc.StatusCode.NOT_FOUND
