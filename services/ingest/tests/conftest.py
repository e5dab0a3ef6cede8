"""Fixtures: a real ingest server (in-process, port 0) on each object-store backend."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from ferry.ingest.v1 import ingest_pb2_grpc as pbg
from ferry_common.testing import ServiceThread, test_settings
from ferry_ingest.__main__ import build
from ferry_ingest.testing import Ingest


@pytest.fixture
def ingest_env() -> dict[str, str]:
    """Extra ``FERRY_INGEST_*`` variables of the ``ingest`` server (a test module may override this)."""
    return {}


@pytest.fixture(params=["local", "s3"])
def ingest(request: pytest.FixtureRequest, tmp_path: pathlib.Path, ingest_env: dict[str, str]) -> Iterator[Ingest]:
    """An ingest server on the local backend and on S3 (moto through the minio SDK)."""
    env: dict[str, str] = {}
    if request.param == "s3":
        env = request.getfixturevalue("s3_env")
    settings = test_settings("ingest", tmp_path / "state", {**env, **ingest_env})
    with ServiceThread(settings, build) as service:
        channel = service.channel()
        yield Ingest(pbg.IngestServiceStub(channel), settings, request.param, service.target)
        channel.close()
