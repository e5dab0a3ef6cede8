"""ImportDataset only reads what the operator allowed, even for an editor's token.

Every server here has authentication on and is called with an editor token: the role
that may import must still not reach the server's own files, databases or buckets.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import grpc
import psycopg
import pytest
import yaml
from minio import Minio

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry.ingest.v1 import ingest_pb2_grpc as pbg
from ferry_common.process import closed_address
from ferry_common.settings import SettingsError
from ferry_common.testing import ServiceThread, test_settings
from ferry_ingest.__main__ import build
from ferry_ingest.config import IngestConfig
from ferry_ingest.testing import Ingest, csv_bytes, rpc_error

EDITOR_TOKEN = "editor-token-for-import-tests"
EDITOR = (("authorization", f"Bearer {EDITOR_TOKEN}"),)
Serve = Callable[[dict[str, str]], AbstractContextManager[Ingest]]


@pytest.fixture
def serve(tmp_path: pathlib.Path) -> Serve:
    """Start an ingest server with auth on and the given extra variables."""
    tokens = tmp_path / "tokens.yaml"
    entry = {"identity": "etl-bot", "role": "editor", "sha256": hashlib.sha256(EDITOR_TOKEN.encode()).hexdigest()}
    tokens.write_text(yaml.safe_dump({"tokens": [entry]}))

    @contextmanager
    def start(env: dict[str, str]) -> Iterator[Ingest]:
        settings = test_settings(
            "ingest", tmp_path / f"state-{uuid.uuid4().hex[:6]}", {"FERRY_AUTH_TOKENS_FILE": str(tokens), **env}
        )
        backend = "s3" if settings.object_store_url.startswith("s3://") else "local"
        with ServiceThread(settings, build) as service:
            channel = service.channel()
            yield Ingest(pbg.IngestServiceStub(channel), settings, backend)
            channel.close()

    return start


def _import(ingest: Ingest, request: pb.ImportDatasetRequest) -> pb.DatasetVersion:
    events = list(ingest.stub.ImportDataset(request, metadata=EDITOR, timeout=120))
    assert events and events[-1].WhichOneof("result") == "dataset_version"
    version: pb.DatasetVersion = events[-1].dataset_version
    return version


def _refused(ingest: Ingest, request: pb.ImportDatasetRequest, code: grpc.StatusCode, *words: str) -> str:
    """The details of the error ``request`` ends in, checked to have ``code`` and ``words``."""
    error = rpc_error(ingest.stub.ImportDataset, request, metadata=EDITOR, timeout=60)
    details = error.details() or ""
    assert error.code() == code, (error.code(), details)
    for word in words:
        assert word in details, (word, details)
    return details


def _object(uri: str, dataset: str = "stolen") -> pb.ImportDatasetRequest:
    return pb.ImportDatasetRequest(dataset_id=dataset, object=pb.ObjectSource(uri=uri, format=pb.DATA_FORMAT_CSV))


def _sql(dataset: str = "rows", **source: str) -> pb.ImportDatasetRequest:
    return pb.ImportDatasetRequest(dataset_id=dataset, sql=pb.SqlSource(**source))


def _datasets(ingest: Ingest) -> list[str]:
    response = ingest.stub.ListDatasets(pb.ListDatasetsRequest(), metadata=EDITOR, timeout=30)
    return [d.name for d in response.datasets]


# ------------------------------------------------------------------------ file:// imports


def test_file_and_s3_imports_are_off_by_default(serve: Serve, tmp_path: pathlib.Path) -> None:
    readable = tmp_path / "readable.csv"
    readable.write_bytes(csv_bytes(10))
    with serve({}) as ingest:
        # Auth is on: without the token nothing happens at all.
        error = rpc_error(ingest.stub.ImportDataset, _object("file:///etc/hostname"), timeout=30)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

        for uri in ("file:///etc/shadow", "file:///etc/passwd", readable.as_uri()):
            _refused(
                ingest,
                _object(uri),
                grpc.StatusCode.FAILED_PRECONDITION,
                "object.uri",
                "FERRY_INGEST_IMPORT_FILE_ROOTS",
            )
        # A local object store and no FERRY_INGEST_IMPORT_S3_BUCKETS: no bucket is readable.
        _refused(
            ingest,
            _object("s3://any-bucket/data.csv"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "object.uri",
            "FERRY_INGEST_IMPORT_S3_BUCKETS",
        )
        assert _datasets(ingest) == []


@pytest.fixture
def file_tree(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``(root, secret)``: an import root with escapes out of it, and a file outside."""
    root = tmp_path / "imports"
    (root / "nested").mkdir(parents=True)
    (root / "data.csv").write_bytes(csv_bytes(50))
    (root / "my data.csv").write_bytes(csv_bytes(50))
    secret = tmp_path / "secret.csv"
    secret.write_bytes(csv_bytes(7))
    (root / "link.csv").symlink_to(secret)  # a file link leading out
    (root / "outside").symlink_to(tmp_path, target_is_directory=True)  # a directory link leading out
    (root / "inside.csv").symlink_to(root / "data.csv")  # a link that stays inside
    return root, secret


def test_file_import_escapes_out_of_the_roots_are_refused(
    serve: Serve, file_tree: tuple[pathlib.Path, pathlib.Path]
) -> None:
    root, secret = file_tree
    escapes = [
        "file:///etc/shadow",
        f"file://{root}/../secret.csv",
        f"file://{root}/nested/../../secret.csv",
        f"file://{root}/%2e%2e/secret.csv",
        f"file://{root}/%2E%2E%2Fsecret.csv",
        f"file://{root}/nested/%2e%2e%2f%2e%2e%2fsecret.csv",
        (root / "link.csv").as_uri(),
        f"file://{root}/outside/secret.csv",
        f"file://localhost{root}/../secret.csv",
        f"file://{root}/../missing.csv",  # outside and absent: no hint that it is absent
    ]
    with serve({"FERRY_INGEST_IMPORT_FILE_ROOTS": str(root)}) as ingest:
        for uri in escapes:
            _refused(
                ingest, _object(uri), grpc.StatusCode.PERMISSION_DENIED, "object.uri", "FERRY_INGEST_IMPORT_FILE_ROOTS"
            )
        _refused(
            ingest,
            _object(f"file://db.internal{root}/data.csv"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "object.uri",
            "db.internal",
        )
        _refused(ingest, _object(f"file://{root}/nope.csv"), grpc.StatusCode.NOT_FOUND, "object.uri")
        _refused(ingest, _object(f"file://{root}/nested"), grpc.StatusCode.NOT_FOUND, "object.uri")
        assert _datasets(ingest) == []
        assert secret.read_bytes() == csv_bytes(7)


def test_file_import_inside_a_root_works(
    serve: Serve, file_tree: tuple[pathlib.Path, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    root, _ = file_tree
    (tmp_path / "another-root").mkdir()
    with serve({"FERRY_INGEST_IMPORT_FILE_ROOTS": f"{tmp_path / 'another-root'}:{root}"}) as ingest:
        version = _import(ingest, _object((root / "data.csv").as_uri(), "data"))
        assert version.row_count == 50 and version.lineage.source_uri == (root / "data.csv").as_uri()
        # The same bytes through a link that stays inside, through localhost, and with a
        # percent-encoded space in another file name.
        assert _import(ingest, _object((root / "inside.csv").as_uri(), "data")).name == version.name
        assert _import(ingest, _object(f"file://localhost{root}/data.csv", "data")).name == version.name
        spaced = _import(ingest, _object((root / "my data.csv").as_uri(), "spaced"))
        assert "%20" in (root / "my data.csv").as_uri() and spaced.row_count == 50


# --------------------------------------------------------------------------- SQL imports


@pytest.fixture
def shop_db(tmp_path: pathlib.Path) -> pathlib.Path:
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE items (sku TEXT, price REAL)")
        connection.executemany("INSERT INTO items VALUES (?, ?)", [(f"s{i}", i / 4) for i in range(300)])
    connection.close()
    return database


def _connections_file(tmp_path: pathlib.Path, connections: dict[str, dict[str, str]]) -> str:
    path = tmp_path / f"connections-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"connections": connections}))
    return str(path)


def test_sql_urls_are_refused_by_default(serve: Serve, shop_db: pathlib.Path) -> None:
    before = shop_db.read_bytes()
    with serve({}) as ingest:
        query = "SELECT * FROM items"
        _refused(ingest, _sql(url=f"sqlite:///{shop_db}", query=query), grpc.StatusCode.PERMISSION_DENIED, "sql.url")
        _refused(ingest, _sql(url="sqlite:////etc/passwd", query=query), grpc.StatusCode.PERMISSION_DENIED, "sql.url")
        # A network URL is refused too, before any connection: the operator did not opt in.
        _refused(
            ingest,
            _sql(url="postgresql+psycopg://reader@127.0.0.1:1/sales", query=query),
            grpc.StatusCode.FAILED_PRECONDITION,
            "sql.url",
            "FERRY_INGEST_ALLOW_SQL_URLS",
        )
        _refused(
            ingest, _sql(connection="warehouse", query=query), grpc.StatusCode.NOT_FOUND, "sql.connection", "warehouse"
        )
        _refused(ingest, _sql(query=query), grpc.StatusCode.INVALID_ARGUMENT, "sql.connection")
        assert _datasets(ingest) == []
    assert shop_db.read_bytes() == before


def test_raw_urls_that_reach_local_files_are_refused_even_when_urls_are_allowed(
    serve: Serve, shop_db: pathlib.Path
) -> None:
    with serve({"FERRY_INGEST_ALLOW_SQL_URLS": "true"}) as ingest:
        query = "SELECT * FROM items"
        for url in (f"sqlite:///{shop_db}", f"sqlite+pysqlite:///{shop_db}", "sqlite://"):
            _refused(ingest, _sql(url=url, query=query), grpc.StatusCode.PERMISSION_DENIED, "sql.url", "sqlite")
        # The server's own PostgreSQL socket (peer authentication as the service's user).
        for url in (
            "postgresql+psycopg:///postgres?host=/var/run/postgresql",
            "postgresql+psycopg://reader@db.internal/sales?passfile=/etc/ferry/pgpass",
        ):
            _refused(ingest, _sql(url=url, query=query), grpc.StatusCode.PERMISSION_DENIED, "sql.url")
        assert _datasets(ingest) == []


def test_a_named_sqlite_connection_imports_read_only_and_times_out(
    serve: Serve, shop_db: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "gone.db"
    env = {
        "FERRY_INGEST_CONNECTIONS_FILE": _connections_file(
            tmp_path, {"shop": {"url": f"sqlite:///{shop_db}"}, "gone": {"url": f"sqlite:///{missing}"}}
        ),
        "FERRY_INGEST_SQL_STATEMENT_TIMEOUT_SECONDS": "1",
    }
    with serve(env) as ingest:
        version = _import(ingest, _sql("items", connection="shop", query="SELECT sku, price FROM items"))
        assert version.row_count == 300 and version.lineage.source_uri == "connection:shop"
        assert str(shop_db) not in str(version.lineage)

        # A query that would run forever is interrupted once it runs past the limit.
        forever = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
        started = time.monotonic()
        _refused(
            ingest,
            _sql("items", connection="shop", query=forever),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "sql.query",
            "1 s",
            "FERRY_INGEST_SQL_STATEMENT_TIMEOUT_SECONDS",
        )
        assert time.monotonic() - started < 10

        # The file of a connection is opened read-only: a missing one is not created.
        _refused(
            ingest,
            _sql("items", connection="gone", query="SELECT 1"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "sql.connection",
            "gone",
        )
        assert not missing.exists()


@pytest.fixture
def warehouse(postgres_url: str) -> Iterator[tuple[str, str, str]]:
    """A PostgreSQL role with a password of its own that may read one table.

    Returns ``(url without password, role, password)``.
    """
    role, password = f"reader_{uuid.uuid4().hex[:10]}", f"Pw-{uuid.uuid4().hex}"
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    database = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        connection.execute("CREATE TABLE sales (id bigint, amount double precision)")
        connection.execute("INSERT INTO sales SELECT g, g * 0.5 FROM generate_series(1, 1000) g")
        connection.execute(f"GRANT SELECT ON sales TO {role}")
    yield f"postgresql+psycopg://{role}@127.0.0.1:5432/{database}", role, password
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP OWNED BY {role}")
        connection.execute(f"DROP ROLE {role}")


@pytest.mark.postgres
def test_a_named_postgres_connection_imports_and_keeps_its_password(
    serve: Serve,
    warehouse: tuple[str, str, str],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url, role, password = warehouse
    down_password = f"Down-{uuid.uuid4().hex}"
    monkeypatch.setenv("WAREHOUSE_PASSWORD", password)
    monkeypatch.setenv("WRONG_PASSWORD", f"{password}-not")
    monkeypatch.setenv("DOWN_PASSWORD", down_password)
    connections = {
        "warehouse": {"url": url, "password_env": "WAREHOUSE_PASSWORD"},
        "wrong": {"url": url, "password_env": "WRONG_PASSWORD"},
        "down": {"url": f"postgresql+psycopg://{role}@{closed_address()}/sales", "password_env": "DOWN_PASSWORD"},
    }
    env = {
        "FERRY_INGEST_CONNECTIONS_FILE": _connections_file(tmp_path, connections),
        "FERRY_INGEST_SQL_STATEMENT_TIMEOUT_SECONDS": "1",
    }
    with serve(env) as ingest:
        version = _import(ingest, _sql("sales", connection="warehouse", query="SELECT * FROM sales ORDER BY id"))
        assert version.row_count == 1000
        assert version.lineage.source_uri == "connection:warehouse"
        assert password not in str(version) and role not in version.lineage.source_uri

        details = [
            _refused(
                ingest,
                _sql(connection="warehouse", query="SELECT * FROM nope"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "sql.query",
                "nope",
            ),
            _refused(
                ingest,
                _sql(connection="wrong", query="SELECT 1"),
                grpc.StatusCode.UNAVAILABLE,
                "sql.connection",
                "'wrong'",
            ),
            _refused(
                ingest,
                _sql(connection="down", query="SELECT 1"),
                grpc.StatusCode.UNAVAILABLE,
                "sql.connection",
                "'down'",
            ),
            _refused(
                ingest, _sql(connection="nope", query="SELECT 1"), grpc.StatusCode.NOT_FOUND, "sql.connection", "nope"
            ),
        ]
        for text in details:
            assert password not in text and down_password not in text

        # pg_sleep(20) is cancelled by the server after the 1 s statement timeout.
        started = time.monotonic()
        _refused(
            ingest,
            _sql(connection="warehouse", query="SELECT pg_sleep(20)"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "sql.query",
            "statement timeout of 1 s",
        )
        assert time.monotonic() - started < 8

    logged = capfd.readouterr()
    assert password not in logged.out + logged.err and down_password not in logged.out + logged.err


def test_a_malformed_connections_file_stops_the_service(tmp_path: pathlib.Path) -> None:
    def start(text: str, environ: dict[str, str] | None = None) -> str:
        path = tmp_path / "connections.yaml"
        path.write_text(text)
        settings = test_settings("ingest", tmp_path / "state", {"FERRY_INGEST_CONNECTIONS_FILE": str(path)})
        with pytest.raises(SettingsError) as raised:
            IngestConfig.from_settings(settings, environ or {})
        message = str(raised.value)
        assert "FERRY_INGEST_CONNECTIONS_FILE" in message and str(path) in message
        return message

    assert "YAML" in start("connections: [unclosed\n")
    assert "'connections'" in start("warehouse:\n  url: postgresql://db/sales\n")
    assert "'url'" in start("connections:\n  warehouse:\n    password_env: X\n")
    assert "Warehouse" in start("connections:\n  Warehouse:\n    url: postgresql://db/sales\n")
    assert "hostname" in start("connections:\n  w:\n    url: postgresql://db/sales\n    hostname: x\n")
    assert "not a SQLAlchemy URL" in start("connections:\n  w:\n    url: 'not a url'\n")
    inline = start("connections:\n  w:\n    url: postgresql://reader:hunter2@db/sales\n")
    assert "password_env" in inline and "hunter2" not in inline
    assert "NOT_SET_ANYWHERE" in start(
        "connections:\n  w:\n    url: postgresql://reader@db/sales\n    password_env: NOT_SET_ANYWHERE\n"
    )
    # The service itself refuses to start on such a file.
    bad = tmp_path / "bad.yaml"
    bad.write_text("connections: 3\n")
    settings = test_settings("ingest", tmp_path / "state2", {"FERRY_INGEST_CONNECTIONS_FILE": str(bad)})
    service = ServiceThread(settings, build)
    try:
        with pytest.raises(SettingsError, match=r"bad\.yaml"):
            service.start()
    finally:
        service.stop()


# ---------------------------------------------------------------------------- S3 imports


def test_s3_imports_read_only_the_allowed_buckets(serve: Serve, s3_env: dict[str, str]) -> None:
    data = csv_bytes(20)
    client = Minio(
        s3_env["FERRY_S3_ENDPOINT"],
        access_key=s3_env["FERRY_S3_ACCESS_KEY"],
        secret_key=s3_env["FERRY_S3_SECRET_KEY"],
        secure=False,
    )
    own = s3_env["FERRY_OBJECT_STORE_URL"].removeprefix("s3://").split("/", 1)[0]
    other = f"other-{uuid.uuid4().hex[:8]}"
    client.make_bucket(other)
    for bucket in (own, other):
        client.put_object(bucket, "drop/orders.csv", io.BytesIO(data), len(data))

    with serve(s3_env) as ingest:  # FERRY_INGEST_IMPORT_S3_BUCKETS unset: the store's own bucket
        version = _import(ingest, _object(f"s3://{own}/drop/orders.csv", "orders"))
        assert version.row_count == 20
        _refused(
            ingest,
            _object(f"s3://{other}/drop/orders.csv"),
            grpc.StatusCode.PERMISSION_DENIED,
            "object.uri",
            other,
            "FERRY_INGEST_IMPORT_S3_BUCKETS",
        )

    with serve({**s3_env, "FERRY_INGEST_IMPORT_S3_BUCKETS": other}) as ingest:
        assert _import(ingest, _object(f"s3://{other}/drop/orders.csv", "orders")).row_count == 20
        _refused(ingest, _object(f"s3://{own}/drop/orders.csv"), grpc.StatusCode.PERMISSION_DENIED, "object.uri")


def test_s3_import_from_an_endpoint_that_is_down_is_unavailable(serve: Serve) -> None:
    env = {"FERRY_INGEST_IMPORT_S3_BUCKETS": "landing", "FERRY_S3_ENDPOINT": closed_address()}
    with serve(env) as ingest:  # a local object store; only the import source is on S3
        started = time.monotonic()
        _refused(
            ingest,
            _object("s3://landing/drop/orders.csv"),
            grpc.StatusCode.UNAVAILABLE,
            "object.uri",
            "s3://landing/drop/orders.csv",
        )
        assert time.monotonic() - started < 30
