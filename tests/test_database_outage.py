"""PostgreSQL goes away under a running registry and ingest: UNAVAILABLE, then recovery.

A lost database is a backend down (DESIGN.md: UNAVAILABLE, which clients retry), never
INTERNAL; when the server is back, the same processes serve again without a restart.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from ferry_common.testing import ServiceThread, test_settings
from ferry_common.testing_postgres import PrivatePostgres, postgres_bin
from ferry_sdk import IngestClient, RegistryClient
from ferry_sdk.errors import FerryError, Unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed"),
]

CSV = b"a,b\n1,x\n2,y\n"


def _error(call: Callable[[], Any]) -> FerryError | None:
    try:
        call()
    except FerryError as error:
        return error
    return None


def _eventually_ok(call: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Unavailable:
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
            RegistryClient(f"127.0.0.1:{registry.port}", timeout=30) as models,
            IngestClient(f"127.0.0.1:{ingest.port}", timeout=30) as datasets,
        ):
            models.create_model("before")
            datasets.upload_dataset("before", CSV, format="csv")

            pg.stop()
            calls: list[Callable[[], Any]] = [
                lambda: models.get_model("models/before"),
                lambda: models.create_model("during"),
                lambda: list(models.list_models()),
                lambda: datasets.get_dataset("datasets/before"),
                lambda: list(datasets.list_datasets()),
                lambda: datasets.upload_dataset("during", CSV, format="csv"),
            ]
            for call in calls:
                error = _error(call)
                assert isinstance(error, Unavailable), error

            pg.start()
            assert _eventually_ok(lambda: models.get_model("models/before")).name == "models/before"
            _eventually_ok(lambda: models.create_model("after"))
            assert _eventually_ok(lambda: datasets.upload_dataset("after", CSV, format="csv")).name == (
                "datasets/after/versions/1"
            )
            assert [m.name for m in models.list_models()] == ["models/after", "models/before"]
            assert [d.name for d in datasets.list_datasets()] == ["datasets/after", "datasets/before"]
