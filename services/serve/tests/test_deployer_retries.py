"""The deployer when the registry is unreachable: traffic kept, state shown, retried until it works.

A real deployer on a real SQLite store, router and model repository; the registry and Triton
are stand-ins (a registry that can be made unreachable at will, a Triton that loads anything),
because the point is the deployer's bookkeeping, not the transport. The same behaviour with
real processes: ``tests/test_serve_registry_outage.py``.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, cast

from ferry.registry.v1 import registry_pb2
from ferry_sdk import errors as sdk_errors
from ferry_serve.deployer import Deployer
from ferry_serve.domain import Deployment, DeploymentState
from ferry_serve.routing import Router
from ferry_serve.store import SqlServeStore, open_database
from ferry_serve.testing import TINY_SIGNATURE, tiny_classifier

MODEL = tiny_classifier()


class Registry:
    """The calls the deployer makes; ``down`` makes each fail as an unreachable registry does."""

    def __init__(self) -> None:
        self.alias = 1
        self.versions = {1, 2}
        self.down = False
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise sdk_errors.Unavailable("failed to connect to all addresses")

    async def get_alias(self, name: str, timeout: float | None = None) -> registry_pb2.Alias:
        self._call()
        return registry_pb2.Alias(name=name, version=self.alias)

    async def get_model_version(self, name: str, timeout: float | None = None) -> registry_pb2.ModelVersion:
        self._call()
        if int(name.rsplit("/", 1)[1]) not in self.versions:
            raise sdk_errors.NotFound(f"{name} does not exist")
        return registry_pb2.ModelVersion(name=name, signature=TINY_SIGNATURE)

    async def download_model_version(self, name: str, timeout: float | None = None) -> bytes:
        self._call()
        return MODEL


class Triton:
    """Loads, warms and unloads anything at once."""

    async def load(self, name: str) -> None:
        pass

    async def warm(self, name: str, signature: Any) -> None:
        pass

    async def unload(self, name: str, *, wait: bool = True) -> None:
        pass


async def stored_state(runner: Any, store: SqlServeStore, state: DeploymentState, timeout: float = 20.0) -> Deployment:
    """The stored deployment once it reaches ``state``: the router switches before the row is written."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (deployment := await runner.read(store.get, "iris")).state is not state:
        assert asyncio.get_running_loop().time() < deadline, f"still {deployment.state}: {deployment.message}"
        await asyncio.sleep(0.02)
    return deployment


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def run_deployer(tmp_path: pathlib.Path, scenario: Any) -> None:
    async def main() -> None:
        database = await asyncio.to_thread(open_database, f"sqlite:///{tmp_path / 'serve.db'}")
        store = SqlServeStore(database)
        registry, router = Registry(), Router()
        deployer = Deployer(
            store,
            database.runner,
            cast(Any, registry),
            cast(Any, Triton()),
            router,
            repository=tmp_path / "models",
            backend="python",
            drain_seconds=0,
            retry_max_seconds=1.0,
        )
        try:
            await scenario(deployer, store, database.runner, registry, router)
        finally:
            await deployer.stop()
            await asyncio.to_thread(database.close)

    asyncio.run(main())


def test_a_deployment_started_without_the_registry_is_retried_until_it_serves(tmp_path: pathlib.Path) -> None:
    async def scenario(
        deployer: Deployer, store: SqlServeStore, runner: Any, registry: Registry, router: Router
    ) -> None:
        stored = await runner.write(store.create, Deployment(deployment_id="iris", model_id="iris"))
        registry.down = True
        pending = await deployer.apply(stored)
        assert pending.state is DeploymentState.PENDING
        assert "the registry is unavailable" in pending.message and "retrying in 0.5 s" in pending.message
        assert (await runner.read(store.get, "iris")).state is DeploymentState.PENDING
        messages: list[str] = []

        async def retried() -> bool:
            latest = await runner.read(store.get, "iris")
            messages.append(f"{latest.state}: {latest.message}")
            return latest.state is DeploymentState.PENDING and "retrying in 1 s" in latest.message

        for _ in range(200):
            if await retried():
                break
            await asyncio.sleep(0.05)
        assert "retrying in 1 s" in messages[-1], messages[-1]  # retried once, the next delay doubled

        registry.down = False
        await until(lambda: router.get("iris") is not None)
        routes = router.get("iris")
        assert routes is not None and routes.primary.version == 1
        ready = await stored_state(runner, store, DeploymentState.READY)
        assert ready.state is DeploymentState.READY, ready.message
        calls = registry.calls
        await asyncio.sleep(1.5)
        assert registry.calls == calls, "retries went on after the deployment was routed"

    run_deployer(tmp_path, scenario)


def test_an_alias_move_met_by_an_outage_keeps_traffic_and_moves_once_the_registry_is_back(
    tmp_path: pathlib.Path,
) -> None:
    async def scenario(
        deployer: Deployer, store: SqlServeStore, runner: Any, registry: Registry, router: Router
    ) -> None:
        stored = await runner.write(store.create, Deployment(deployment_id="iris", model_id="iris"))
        assert (await deployer.apply(stored)).state is DeploymentState.READY
        registry.alias = 2
        registry.down = True
        updating = await deployer.apply(await runner.read(store.get, "iris"))
        assert updating.state is DeploymentState.UPDATING
        assert updating.message.endswith("retrying in 0.5 s; traffic stays on serving version 1"), updating.message
        routes = router.get("iris")
        assert routes is not None and routes.primary.version == 1

        registry.down = False
        await until(lambda: (r := router.get("iris")) is not None and r.primary.version == 2)
        ready = await stored_state(runner, store, DeploymentState.READY)
        assert ready.state is DeploymentState.READY and ready.message == "serving version 2", ready.message

    run_deployer(tmp_path, scenario)


def test_permanent_failures_are_not_retried_and_a_delete_ends_retries(tmp_path: pathlib.Path) -> None:
    async def scenario(
        deployer: Deployer, store: SqlServeStore, runner: Any, registry: Registry, router: Router
    ) -> None:
        stored = await runner.write(store.create, Deployment(deployment_id="iris", model_id="iris"))
        registry.alias = 7  # no such version
        failed = await deployer.apply(stored)
        assert failed.state is DeploymentState.FAILED and "retrying" not in failed.message, failed.message
        calls = registry.calls
        await asyncio.sleep(1.0)
        assert registry.calls == calls, "a permanent failure was retried"

        registry.down = True
        assert (await deployer.apply(await runner.read(store.get, "iris"))).state is DeploymentState.PENDING
        await runner.write(store.delete, "iris")
        await deployer.remove("iris")
        calls = registry.calls
        await asyncio.sleep(1.0)
        assert registry.calls == calls, "a deleted deployment was retried"
        assert router.unready_ids() == []

    run_deployer(tmp_path, scenario)
