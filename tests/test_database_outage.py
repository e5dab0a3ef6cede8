"""PostgreSQL goes away under a running registry and ingest: UNAVAILABLE, then recovery.

A lost database is a backend down (DESIGN.md: UNAVAILABLE, which clients retry), never
INTERNAL; when the server is back, the same processes serve again without a restart.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from ferry.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings
from ferry_common.testing_postgres import PrivatePostgres, postgres_bin

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed"),
]

CSV = b"a,b\n1,x\n2,y\n"


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _eventually_ok(call: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_registry_and_ingest_answer_unavailable_while_postgres_is_down_and_recover(tmp_path: pathlib.Path) -> None:
    from ferry_ingest.__main__ import build as build_ingest
    from ferry_registry.__main__ import build as build_registry

    with PrivatePostgres() as pg:
        registry_env = {"FERRY_REGISTRY_DATABASE_URL": pg.url, "FERRY_LOG_LEVEL": "error"}
        # One server for both: their tables and Alembic version tables are distinct.
        ingest_env = {"FERRY_INGEST_DATABASE_URL": pg.url, "FERRY_LOG_LEVEL": "error"}
        with (
            ServiceThread(test_settings("registry", tmp_path / "registry", registry_env), build_registry) as registry,
            ServiceThread(test_settings("ingest", tmp_path / "ingest", ingest_env), build_ingest) as ingest,
        ):
            models = registry_pb2_grpc.RegistryServiceStub(registry.channel())
            datasets = ingest_pb2_grpc.IngestServiceStub(ingest.channel())

            def upload(dataset_id: str) -> Any:
                header = ingest_pb2.UploadDatasetHeader(dataset_id=dataset_id, format=ingest_pb2.DATA_FORMAT_CSV)
                messages = [ingest_pb2.UploadDatasetRequest(header=header), ingest_pb2.UploadDatasetRequest(chunk=CSV)]
                return datasets.UploadDataset(iter(messages), timeout=30)

            models.CreateModel(registry_pb2.CreateModelRequest(model_id="before"))
            upload("before")

            pg.stop()
            calls: list[Callable[[], Any]] = [
                lambda: models.GetModel(registry_pb2.GetModelRequest(name="models/before"), timeout=30),
                lambda: models.CreateModel(registry_pb2.CreateModelRequest(model_id="during"), timeout=30),
                lambda: models.ListModels(registry_pb2.ListModelsRequest(), timeout=30),
                lambda: datasets.GetDataset(ingest_pb2.GetDatasetRequest(name="datasets/before"), timeout=30),
                lambda: datasets.ListDatasets(ingest_pb2.ListDatasetsRequest(), timeout=30),
                lambda: upload("during"),
            ]
            for call in calls:
                assert _code(call) == grpc.StatusCode.UNAVAILABLE

            pg.start()
            assert _eventually_ok(lambda: models.GetModel(registry_pb2.GetModelRequest(name="models/before"))).name
            _eventually_ok(lambda: models.CreateModel(registry_pb2.CreateModelRequest(model_id="after")))
            assert _eventually_ok(lambda: upload("after")).name == "datasets/after/versions/1"
            names = [m.name for m in models.ListModels(registry_pb2.ListModelsRequest()).models]
            assert names == ["models/after", "models/before"]
            listed = datasets.ListDatasets(ingest_pb2.ListDatasetsRequest()).datasets
            assert [d.name for d in listed] == ["datasets/after", "datasets/before"]
