"""Fixtures: real ``ferry-registry`` (SQLite) and ``ferry-ingest`` (local store) processes,
and a client of each in both flavours.

The ``aio`` flavour drives the asyncio client from the (synchronous) test body: its
coroutines run on an event loop of their own in a background thread, so one test body
checks both flavours against the same servers.
"""

from __future__ import annotations

import asyncio
import inspect
import pathlib
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ferry_common.settings import Settings, load_settings
from ferry_sdk import IngestClient, RegistryClient, ServiceProcess, TrainClient, aio, spawn_and_wait

MIB = 1024 * 1024
SERVICE_ENV = {"OTEL_TRACES_EXPORTER": "none", "FERRY_LOG_FORMAT": "json", "FERRY_SHUTDOWN_GRACE_SECONDS": "5"}
# Small limits so RESOURCE_EXHAUSTED is cheap to reach.
MAX_ARTIFACT_BYTES = 8 * MIB
MAX_UPLOAD_BYTES = 8 * MIB


def client_settings(service: str, **env: str) -> Settings:
    """Client settings that ignore this machine's ``FERRY_*`` variables."""
    return load_settings(service, env)


@pytest.fixture(scope="session")
def registry_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    state = tmp_path_factory.mktemp("registry")
    env = {**SERVICE_ENV, "FERRY_STATE_DIR": str(state), "FERRY_REGISTRY_MAX_ARTIFACT_BYTES": str(MAX_ARTIFACT_BYTES)}
    with spawn_and_wait("registry", env=env, log_path=state / "registry.log") as process:
        yield process


@pytest.fixture(scope="session")
def import_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The one directory the ingest process may import ``file://`` objects from."""
    return tmp_path_factory.mktemp("imports")


@pytest.fixture(scope="session")
def ingest_process(tmp_path_factory: pytest.TempPathFactory, import_dir: pathlib.Path) -> Iterator[ServiceProcess]:
    state = tmp_path_factory.mktemp("ingest")
    env = {
        **SERVICE_ENV,
        "FERRY_STATE_DIR": str(state),
        "FERRY_INGEST_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "FERRY_INGEST_IMPORT_FILE_ROOTS": str(import_dir),
    }
    with spawn_and_wait("ingest", env=env, log_path=state / "ingest.log") as process:
        yield process


class Blocking:
    """Calls an asyncio client from synchronous code, on the client's own event loop."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> Any:
            return factory()

        self.client = self.run(make())

    def run(self, awaitable: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop).result(timeout=120)

    def _iterate(self, iterator: Any) -> Iterator[Any]:
        while True:
            try:
                yield self.run(iterator.__anext__())
            except StopAsyncIteration:
                return

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if inspect.isawaitable(result):
                return self.run(result)
            if hasattr(result, "__anext__"):
                return self._iterate(result)
            return result

        return call

    def close(self) -> None:
        self.run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(params=["sync", "aio"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _make_client(flavour: str, service: str, address: str, **options: Any) -> Any:
    sync_class, aio_class = {
        "registry": (RegistryClient, aio.RegistryClient),
        "ingest": (IngestClient, aio.IngestClient),
        "train": (TrainClient, aio.TrainClient),
    }[service]
    options.setdefault("settings", client_settings(service))
    if flavour == "sync":
        return sync_class(address, **options)
    return Blocking(lambda: aio_class(address, **options))


@pytest.fixture
def make_client(flavour: str) -> Iterator[Callable[..., Any]]:
    """``make_client(service, address, **options)``: a client in this test's flavour, closed afterwards."""
    made: list[Any] = []

    def make(service: str, address: str, **options: Any) -> Any:
        made.append(_make_client(flavour, service, address, **options))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def registry(make_client: Callable[..., Any], registry_process: ServiceProcess) -> Any:
    return make_client("registry", registry_process.address)


@pytest.fixture
def ingest(make_client: Callable[..., Any], ingest_process: ServiceProcess) -> Any:
    return make_client("ingest", ingest_process.address)


@pytest.fixture
def new_id() -> Callable[[str], str]:
    """Fresh resource ids, so tests sharing a server never collide."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"
