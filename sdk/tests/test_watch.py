"""``watch_aliases`` resumes across a registry restart with no gap and no duplicate.

The registry is stopped with SIGTERM (its drain ends every watch with UNAVAILABLE)
and started again on the same state directory and port; the watch reconnects with
``since_revision`` = the last revision it delivered.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ferry.registry.v1 import registry_pb2
from ferry_common.settings import load_settings
from ferry_sdk import Backoff, RegistryClient, ServiceProcess, aio, errors, free_port, spawn_and_wait

FAST = Backoff(initial=0.05, maximum=0.5, give_up_after=60)


@dataclass
class Registry:
    """A registry that can be restarted on the same state and port."""

    env: dict[str, str]
    address: str
    log: pathlib.Path
    process: ServiceProcess | None = None

    def start(self) -> None:
        self.process = spawn_and_wait("registry", env=self.env, address=self.address, log_path=self.log)

    def stop(self) -> None:
        assert self.process is not None
        assert self.process.stop(timeout=15) == 0
        self.process = None


@pytest.fixture
def restartable(tmp_path: pathlib.Path) -> Iterator[Registry]:
    env = {"FERRY_STATE_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "none", "FERRY_SHUTDOWN_GRACE_SECONDS": "5"}
    registry = Registry(env, f"127.0.0.1:{free_port()}", tmp_path / "registry.log")
    registry.start()
    yield registry
    if registry.process is not None:
        registry.process.stop()


def seed(client: RegistryClient) -> str:
    """A model with two versions and three alias events (revisions 1-3); returns the alias."""
    model = client.create_model("watched")
    client.upload_model_version(model.name, b"one")
    client.upload_model_version(model.name, b"two")
    alias = f"{model.name}/aliases/production"
    for version in (1, 2, 1):
        client.set_alias(alias, version)
    return alias


def wait_for(condition: threading.Condition, predicate: object, timeout: float = 60) -> None:
    with condition:
        assert condition.wait_for(predicate, timeout=timeout), "the watch did not deliver in time"  # type: ignore[arg-type]


def once_reconnected(call: Callable[[], object]) -> None:
    """Make a write once the client's channel has reconnected to the restarted registry.

    SetAlias is not idempotent, so the client never retries it; a channel still backing
    off its reconnect fails fast with UNAVAILABLE (nothing was sent: safe to repeat here).
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            call()
            return
        except errors.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def once_reconnected_async(call: Callable[[], Awaitable[object]]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await call()
            return
        except errors.Unavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.slow
def test_sync_watch_resumes_across_a_restart_without_gap_or_duplicate(restartable: Registry) -> None:
    client = RegistryClient(restartable.address, settings=load_settings("registry", {}))
    alias = seed(client)
    watch = client.watch_aliases("watched", backoff=FAST)
    delivered: list[registry_pb2.AliasEvent] = []
    arrived = threading.Condition()

    def consume() -> None:
        for event in watch:
            with arrived:
                delivered.append(event)
                arrived.notify_all()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    wait_for(arrived, lambda: len(delivered) == 3)

    restartable.stop()  # the stream breaks with UNAVAILABLE; the watch keeps retrying
    time.sleep(1.0)
    restartable.start()
    for version in (2, 1, 2):
        once_reconnected(lambda v=version: client.set_alias(alias, v, reason="after the restart"))
    wait_for(arrived, lambda: len(delivered) >= 6)

    assert [e.revision for e in delivered] == [1, 2, 3, 4, 5, 6]
    assert [e.to_version for e in delivered] == [1, 2, 1, 2, 1, 2]
    assert watch.revision == 6
    watch.cancel()  # ends the iteration blocked in the consumer thread
    consumer.join(timeout=10)
    assert not consumer.is_alive()
    time.sleep(0.5)
    assert len(delivered) == 6
    client.close()


@pytest.mark.slow
def test_asyncio_watch_resumes_across_a_restart_without_gap_or_duplicate(restartable: Registry) -> None:
    setup = RegistryClient(restartable.address, settings=load_settings("registry", {}))
    alias = seed(setup)
    setup.close()

    async def scenario() -> list[registry_pb2.AliasEvent]:
        delivered: list[registry_pb2.AliasEvent] = []
        async with aio.RegistryClient(restartable.address, settings=load_settings("registry", {})) as client:
            watch = client.watch_aliases("watched", since_revision=1, backoff=FAST)

            async def consume() -> None:
                async for event in watch:
                    delivered.append(event)

            consumer = asyncio.create_task(consume())
            while len(delivered) < 2:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(restartable.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(restartable.start)
            for version in (2, 1):
                await once_reconnected_async(lambda v=version: client.set_alias(alias, v, reason="after the restart"))
            deadline = time.monotonic() + 60
            while len(delivered) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # a duplicate would arrive now
            assert watch.revision == 5
            watch.cancel()
            await asyncio.wait_for(consumer, timeout=10)
        return delivered

    delivered = asyncio.run(scenario())
    assert [e.revision for e in delivered] == [2, 3, 4, 5]  # since_revision=1 is exclusive
    assert [e.to_version for e in delivered] == [2, 1, 2, 1]


def test_a_watch_gives_up_after_its_patience(make_client: Callable[..., Any]) -> None:
    nowhere = make_client("registry", f"127.0.0.1:{free_port()}")
    watch = nowhere.watch_aliases(backoff=Backoff(initial=0.01, maximum=0.05, give_up_after=0.5))
    started = time.monotonic()
    with pytest.raises(errors.Unavailable):
        next(iter(watch))
    assert 0.5 <= time.monotonic() - started < 15
