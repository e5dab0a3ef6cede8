"""Registry test fixtures: databases (SQLite and PostgreSQL), store, service, gRPC server."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from ferry.registry.v1 import registry_pb2 as pb
from ferry.registry.v1 import registry_pb2_grpc
from ferry_common.objectstore import LocalObjectStore
from ferry_common.testing import ServiceThread, test_settings
from ferry_registry.__main__ import build
from ferry_registry.artifacts import ArtifactStore
from ferry_registry.config import RegistryConfig
from ferry_registry.domain import Artifact, ArtifactFormat, NewModelVersion
from ferry_registry.service import RegistryService
from ferry_registry.store import Database, SqlRegistryStore, open_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SHA = "ab" * 32


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """A fresh database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(RegistryConfig(database_url=database_url, db_threads=8))
    yield db
    db.close()


@pytest.fixture
def store(database: Database) -> SqlRegistryStore:
    return SqlRegistryStore(database)


def new_version(uri: str = "s3://models/churn/model.onnx", **fields: Any) -> NewModelVersion:
    return NewModelVersion(artifact=Artifact(uri, SHA, 10, ArtifactFormat.ONNX), **fields)


class ServiceHarness:
    """A RegistryService on its own event loop, driven synchronously from tests."""

    def __init__(self, database: Database, objects_dir: pathlib.Path, *, cache: bool) -> None:
        self.database = database
        self.objects = LocalObjectStore(objects_dir)
        self.loop = asyncio.new_event_loop()
        self.service = RegistryService(
            SqlRegistryStore(database),
            database.runner,
            ArtifactStore(self.objects, max_bytes=1 << 20),
            resolve_cache=cache,
            watch_poll_seconds=0.05,
        )
        self.run(self.service.start())

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.run(self.service.stop())
        self.loop.close()


@pytest.fixture
def harness(database: Database, tmp_path: pathlib.Path) -> Iterator[ServiceHarness]:
    h = ServiceHarness(database, tmp_path / "objects", cache=True)
    yield h
    h.close()


class Registry:
    """A running registry server and a stub bound to it."""

    def __init__(self, service: ServiceThread) -> None:
        self.service = service
        self.channel = service.channel()
        self.stub = registry_pb2_grpc.RegistryServiceStub(self.channel)

    def new_stub(self) -> tuple[grpc.Channel, registry_pb2_grpc.RegistryServiceStub]:
        channel = self.service.channel()
        return channel, registry_pb2_grpc.RegistryServiceStub(channel)

    def create_model(self, model_id: str = "churn", **labels: str) -> pb.Model:
        return self.stub.CreateModel(pb.CreateModelRequest(model_id=model_id, model=pb.Model(labels=labels)))

    def create_version(self, model_id: str = "churn", request_id: str = "", **fields: Any) -> pb.ModelVersion:
        version = pb.ModelVersion(
            artifact=pb.Artifact(
                uri=f"s3://bucket/{model_id}.onnx", sha256=SHA, size_bytes=10, format=pb.ARTIFACT_FORMAT_ONNX
            ),
            **fields,
        )
        return self.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(parent=f"models/{model_id}", model_version=version, request_id=request_id)
        )

    def set_alias(self, name: str, version: int, expected: int | None = None, reason: str = "") -> pb.Alias:
        request = pb.SetAliasRequest(name=name, version=version, reason=reason)
        if expected is not None:
            request.expected_version = expected
        return self.stub.SetAlias(request)

    def events(self, parent: str = "models/churn") -> list[pb.AliasEvent]:
        return list(self.stub.ListAliasEvents(pb.ListAliasEventsRequest(parent=parent, page_size=1000)).events)

    def close(self) -> None:
        self.channel.close()


RegistryFactory = Callable[..., Registry]


@pytest.fixture
def registry_factory(tmp_path: pathlib.Path) -> Iterator[RegistryFactory]:
    """Start registries with extra environment; all stop at the end of the test."""
    started: list[tuple[ServiceThread, Registry]] = []

    def start(env: dict[str, str] | None = None, state_dir: pathlib.Path | None = None) -> Registry:
        settings = test_settings("registry", state_dir or tmp_path, {"FERRY_LOG_LEVEL": "warning", **(env or {})})
        thread = ServiceThread(settings, build).start()
        registry = Registry(thread)
        started.append((thread, registry))
        return registry

    yield start
    for thread, registry in reversed(started):
        registry.close()
        thread.stop(grace=1.0)


@pytest.fixture
def registry(registry_factory: RegistryFactory) -> Registry:
    """A registry on SQLite in the test's directory."""
    return registry_factory()


@pytest.fixture
def any_registry(registry_factory: RegistryFactory, database_url: str) -> Registry:
    """A registry on each database backend."""
    return registry_factory({"FERRY_REGISTRY_DATABASE_URL": database_url})


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The error a call fails with (fails the test if it succeeds)."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
