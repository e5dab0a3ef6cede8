"""Keeps Triton and the routing table in line with the deployments and the registry's aliases.

:meth:`Deployer.apply` makes one deployment real: resolve its targets (aliases through the
registry), make sure every version it names is loaded and warm in Triton (artifact
downloaded through the registry with its sha256 checked, ``config.pbtxt`` from the
signature), then swap the routing snapshot in one assignment and retire the versions no
longer routed to once their in-flight requests finished. If any version fails to load or
warm, traffic stays where it was and the deployment shows FAILED with the reason. A failure
only because the registry (or its download) or Triton cannot be reached is not final: the
deployment shows PENDING (no traffic yet) or UPDATING (traffic stays where it was) with the
reason and ``retrying in N s``, and is applied again with backoff (:mod:`ferry_serve.retries`)
until it routes, fails for good, or is deleted.

What triggers it: the control plane (Create/Update), the registry's alias events
(:meth:`follow_aliases`), other replicas' changes in the shared database
(:meth:`follow_store`), a restart of serve (:meth:`resume`) and a restart of Triton
(:meth:`reload_all`). One apply runs at a time (a lock): loads are CPU-bound on the
Triton side anyway, and serialising them keeps the bookkeeping simple.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

from ferry.registry.v1 import registry_pb2
from ferry_common.database import DatabaseRunner
from ferry_common.errors import Aborted, FailedPrecondition, FerryError, InvalidArgument, NotFound, Unavailable
from ferry_common.logs import get_logger
from ferry_sdk import aio
from ferry_sdk import errors as sdk_errors
from ferry_serve.domain import Deployment, DeploymentState, Target
from ferry_serve.retries import Retries
from ferry_serve.routing import LoadedVersion, Router, Routes
from ferry_serve.store.base import ServeStore
from ferry_serve.triton import Backend, Batching, Signature, TritonControl, remove_model, write_model

__all__ = ["Deployer", "triton_name_for"]

_log = get_logger("ferry.serve.deployer")
_REGISTRY_TIMEOUT = 30.0
# Reopening the alias watch after an error other than UNAVAILABLE (which the SDK's watch
# resumes from by itself): 0.5 s, doubling up to 10 s.
_WATCH_RETRY_FIRST = 0.5
_WATCH_RETRY_MAX = 10.0


def triton_name_for(deployment: Deployment, version: int) -> str:
    """The Triton model holding ``version`` for ``deployment``.

    One Triton model per deployment and version (``churn.3``), with the batching settings
    in the name when batching is on (``churn.3.b32-500``): a swap or a batching change
    loads a new Triton model beside the serving one instead of reloading it in place.
    """
    batching = deployment.batching
    if not batching.enabled:
        return f"{deployment.deployment_id}.{version}"
    return f"{deployment.deployment_id}.{version}.b{batching.max_batch_size}-{batching.max_queue_delay_microseconds}"


def _batching(deployment: Deployment) -> Batching | None:
    if not deployment.batching.enabled:
        return None
    return Batching(
        max_batch_size=deployment.batching.max_batch_size,
        max_queue_delay_microseconds=deployment.batching.max_queue_delay_microseconds,
    )


def _from_registry(error: sdk_errors.FerryError, what: str) -> FerryError:
    """A registry error met while loading, as serve reports it (unreachable or too slow: Unavailable)."""
    if isinstance(error, sdk_errors.Unavailable | sdk_errors.DeadlineExceeded):
        return Unavailable(f"{what}: the registry is unavailable ({error.message})")
    if isinstance(error, sdk_errors.NotFound):
        return NotFound(f"{what}: {error.message}")
    return FailedPrecondition(f"{what}: {error.message}")


@dataclasses.dataclass(frozen=True)
class _Resolved:
    primary: tuple[int, str]
    canary: tuple[int, str] | None
    shadow: tuple[int, str] | None

    def versions(self) -> list[int]:
        found = [self.primary[0]]
        for part in (self.canary, self.shadow):
            if part is not None and part[0] not in found:
                found.append(part[0])
        return found


class Deployer:
    """Applies deployments to Triton and the router (see the module docstring).

    Args:
        store: serve's database; runner: how its blocking calls run.
        registry: resolves aliases, reads versions and downloads artifacts.
        control: loads, warms and unloads models in Triton.
        router: the data plane's routing snapshots.
        repository: Triton's model repository; backend: how models run there.
        drain_seconds: how long a replaced version may finish in-flight requests.
        retry_max_seconds: the longest wait between retries of a deployment whose apply
            failed because the registry or Triton could not be reached.
    """

    def __init__(
        self,
        store: ServeStore,
        runner: DatabaseRunner,
        registry: aio.RegistryClient,
        control: TritonControl,
        router: Router,
        *,
        repository: Path,
        backend: Backend,
        drain_seconds: float = 30.0,
        retry_max_seconds: float = 10.0,
    ) -> None:
        self._store = store
        self._runner = runner
        self._registry = registry
        self._control = control
        self._router = router
        self._repository = repository
        self._backend = backend
        self._drain_seconds = drain_seconds
        self._lock = asyncio.Lock()
        self._loaded: dict[str, tuple[LoadedVersion, Batching | None]] = {}
        self._applied: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._retries = Retries(self._retry, maximum=retry_max_seconds)

    # ---------------------------------------------------------------- checks before storing

    async def check(self, deployment: Deployment) -> None:
        """Refuse a deployment whose model or targets do not exist, before it is stored.

        Raises:
            NotFound: the model or a fixed version does not exist (names the field).
            FailedPrecondition: an alias it follows is not set (names the field).
            Unavailable: the registry cannot be reached.
        """
        model = f"models/{deployment.model_id}"
        try:
            await self._registry.get_model(model, timeout=_REGISTRY_TIMEOUT)
        except sdk_errors.NotFound:
            raise NotFound(
                f"deployment.model: {model} does not exist in the registry", field="deployment.model"
            ) from None
        except sdk_errors.FerryError as error:
            raise _from_registry(error, "deployment.model") from None
        targets: list[tuple[str, Target]] = [("deployment.primary", deployment.primary)]
        if deployment.canary is not None:
            targets.append(("deployment.canary.target", deployment.canary.target))
        if deployment.shadow is not None:
            targets.append(("deployment.shadow.target", deployment.shadow.target))
        for field, target in targets:
            await self._resolve(deployment.model_id, target, field)

    async def _resolve(self, model_id: str, target: Target, field: str) -> int:
        try:
            if target.alias is not None:
                alias = await self._registry.get_alias(
                    f"models/{model_id}/aliases/{target.alias}", timeout=_REGISTRY_TIMEOUT
                )
                return int(alias.version)
            name = f"models/{model_id}/versions/{target.version}"
            await self._registry.get_model_version(name, timeout=_REGISTRY_TIMEOUT)
            return int(target.version or 0)
        except sdk_errors.NotFound:
            if target.alias is not None:
                raise FailedPrecondition(
                    f"{field}.alias: alias {target.alias!r} of models/{model_id} is not set "
                    "(set it in the registry first, or name a version)",
                    field=f"{field}.alias",
                ) from None
            raise NotFound(
                f"{field}.version: models/{model_id}/versions/{target.version} does not exist",
                field=f"{field}.version",
            ) from None
        except sdk_errors.FerryError as error:
            raise _from_registry(error, field) from None

    # ---------------------------------------------------------------- applying

    def applied_revision(self, deployment_id: str) -> int:
        return self._applied.get(deployment_id, -1)

    async def apply(self, deployment: Deployment) -> Deployment:
        """Load what ``deployment`` names and route to it; returns it with its new state."""
        async with self._lock:
            return await self._apply(deployment)

    async def _apply(self, deployment: Deployment) -> Deployment:
        deployment_id = deployment.deployment_id
        current = self._router.get(deployment_id)
        try:
            resolved = _Resolved(
                primary=(await self._resolve(deployment.model_id, deployment.primary, "primary"), ""),
                canary=await self._resolve_split(deployment, "canary"),
                shadow=await self._resolve_split(deployment, "shadow"),
            )
            if current is not None and self._same(current, deployment, resolved):
                self._applied[deployment_id] = deployment.revision
                self._retries.clear(deployment_id)
                return await self._set_state(deployment, DeploymentState.READY, _describe(current))
            if current is None:
                self._router.mark_unready(deployment_id, f"loading version(s) {resolved.versions()}")
                deployment = await self._set_state(
                    deployment, DeploymentState.PENDING, f"loading version(s) {resolved.versions()}"
                )
            else:
                deployment = await self._set_state(
                    deployment, DeploymentState.UPDATING, f"loading version(s) {resolved.versions()}"
                )
            loaded = {version: await self._ensure_loaded(deployment, version) for version in resolved.versions()}
        except FerryError as error:
            self._applied[deployment_id] = deployment.revision
            return await self._failed(deployment, current, error)
        routes = Routes(
            deployment=deployment,
            primary=loaded[resolved.primary[0]],
            canary=loaded[resolved.canary[0]] if resolved.canary else None,
            canary_percent=deployment.canary.percent if deployment.canary else 0,
            shadow=loaded[resolved.shadow[0]] if resolved.shadow else None,
            shadow_percent=deployment.shadow.percent if deployment.shadow else 0,
            aliases=self._aliases(deployment, resolved, loaded),
        )
        old = self._router.swap(routes)
        self._applied[deployment_id] = deployment.revision
        self._retries.clear(deployment_id)
        _log.info("deployment routed", deployment=deployment_id, routes=_describe(routes))
        if old is not None:
            self._retire_unused(old)
        return await self._set_state(deployment, DeploymentState.READY, _describe(routes))

    async def _failed(self, deployment: Deployment, current: Routes | None, error: FerryError) -> Deployment:
        """Record a failed apply: FAILED for good, or (registry or Triton unreachable) retried later."""
        deployment_id = deployment.deployment_id
        reason = error.message
        passing = isinstance(error, Unavailable)
        if passing:
            reason += f"; retrying in {self._retries.schedule(deployment_id):g} s"
        else:
            self._retries.clear(deployment_id)
        if current is None:
            self._router.mark_unready(deployment_id, reason)
        else:
            reason += f"; traffic stays on {_describe(current)}"
        if passing:
            _log.warning("deployment waits for a retry", deployment=deployment_id, reason=reason)
            state = DeploymentState.PENDING if current is None else DeploymentState.UPDATING
            return await self._set_state(deployment, state, reason)
        _log.warning("deployment failed", deployment=deployment_id, reason=reason)
        return await self._set_state(deployment, DeploymentState.FAILED, reason)

    async def _retry(self, deployment_id: str) -> None:
        """Apply the deployment as stored now, unless something since ended its retries."""
        async with self._lock:
            if not self._retries.wanted(deployment_id):
                return  # routed, failed for good or deleted meanwhile
            try:
                latest = await self._runner.read(self._store.get, deployment_id)
            except NotFound:  # deleted (through another replica)
                self._retries.clear(deployment_id)
                self._applied.pop(deployment_id, None)
                old = self._router.remove(deployment_id)
                if old is not None:
                    self._retire_unused(old)
                return
            _log.info("retrying deployment", deployment=deployment_id)
            await self._apply(latest)

    async def _resolve_split(self, deployment: Deployment, route: str) -> tuple[int, str] | None:
        split = deployment.canary if route == "canary" else deployment.shadow
        if split is None:
            return None
        version = await self._resolve(deployment.model_id, split.target, f"{route}.target")
        return version, split.target.alias or ""

    @staticmethod
    def _aliases(
        deployment: Deployment, resolved: _Resolved, loaded: dict[int, LoadedVersion]
    ) -> dict[str, LoadedVersion]:
        aliases: dict[str, LoadedVersion] = {}
        # The canary's alias first, so that a primary following the same alias wins.
        for target, part in (
            (deployment.canary.target if deployment.canary else None, resolved.canary),
            (deployment.primary, resolved.primary),
        ):
            if target is not None and target.alias is not None and part is not None:
                aliases[target.alias] = loaded[part[0]]
        return aliases

    def _same(self, current: Routes, deployment: Deployment, resolved: _Resolved) -> bool:
        """Whether ``current`` already routes exactly as ``deployment`` resolves."""
        if not current.deployment.same_spec(deployment):
            return False

        def version(loaded: LoadedVersion | None) -> int | None:
            return loaded.version if loaded is not None else None

        return (
            version(current.primary) == resolved.primary[0]
            and version(current.canary) == (resolved.canary[0] if resolved.canary else None)
            and version(current.shadow) == (resolved.shadow[0] if resolved.shadow else None)
        )

    async def _ensure_loaded(self, deployment: Deployment, version: int) -> LoadedVersion:
        name = triton_name_for(deployment, version)
        known = self._loaded.get(name)
        if known is not None:
            return known[0]
        model_version = f"models/{deployment.model_id}/versions/{version}"
        try:
            message = await self._registry.get_model_version(model_version, timeout=_REGISTRY_TIMEOUT)
        except sdk_errors.FerryError as error:
            raise _from_registry(error, model_version) from None
        if message.artifact.format not in (registry_pb2.ARTIFACT_FORMAT_ONNX, registry_pb2.ARTIFACT_FORMAT_UNSPECIFIED):
            fmt = registry_pb2.ArtifactFormat.Name(message.artifact.format)
            raise FailedPrecondition(f"{model_version}: serve runs ONNX models; this artifact is {fmt}")
        try:
            signature = Signature.from_registry(message.signature)
        except InvalidArgument as error:
            raise FailedPrecondition(f"{model_version}: its signature cannot be served: {error.message}") from None
        batching = _batching(deployment)
        await self._materialize(name, model_version, signature, batching)
        loaded = LoadedVersion(
            version=version,
            model_version=model_version,
            triton_name=name,
            signature=signature,
            classes=_classes(message.params.get("classes", "")),
        )
        self._loaded[name] = (loaded, batching)
        return loaded

    async def _materialize(
        self, name: str, model_version: str, signature: Signature, batching: Batching | None
    ) -> None:
        """Download, write, load and warm one Triton model (unloaded and removed again on failure)."""
        try:
            data = await self._registry.download_model_version(model_version, timeout=300)
        except sdk_errors.FerryError as error:
            raise _from_registry(error, f"{model_version}: download") from None
        await asyncio.to_thread(
            write_model, self._repository, name, data, signature, backend=self._backend, batching=batching
        )
        try:
            await self._control.load(name)
            await self._control.warm(name, signature)
        except FerryError:
            with contextlib.suppress(FerryError):
                await self._control.unload(name)
            await asyncio.to_thread(remove_model, self._repository, name)
            raise

    async def _set_state(self, deployment: Deployment, state: DeploymentState, message: str) -> Deployment:
        try:
            return await self._runner.write(
                self._store.set_state, deployment.deployment_id, state, message, revision=deployment.revision
            )
        except (Aborted, NotFound):
            # Changed or deleted meanwhile: the newer revision is applied next.
            return dataclasses.replace(deployment, state=state, message=message)

    # ---------------------------------------------------------------- retiring and removing

    def _retire_unused(self, old: Routes) -> None:
        for loaded in old.loaded():
            if not self._router.in_use(loaded.triton_name):
                self._spawn(self._retire(loaded))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        async def run() -> None:
            await coroutine

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire(self, loaded: LoadedVersion) -> None:
        """Unload a version once its in-flight requests finished (or ``drain_seconds`` passed)."""
        if not await loaded.drained(self._drain_seconds):
            _log.warning("unloading with requests in flight", triton=loaded.triton_name, inflight=loaded.inflight)
        async with self._lock:
            if self._router.in_use(loaded.triton_name) or loaded.triton_name not in self._loaded:
                return  # routed to again meanwhile, or already gone
            self._loaded.pop(loaded.triton_name, None)
            try:
                await self._control.unload(loaded.triton_name)
            except FerryError as error:
                _log.warning("unload failed", triton=loaded.triton_name, error=error.message)
            await asyncio.to_thread(remove_model, self._repository, loaded.triton_name)
            _log.info("version retired", triton=loaded.triton_name)

    async def remove(self, deployment_id: str) -> None:
        """Stop routing to a deleted deployment; its versions are unloaded after they drain."""
        async with self._lock:
            self._applied.pop(deployment_id, None)
            self._retries.clear(deployment_id)
            old = self._router.remove(deployment_id)
        if old is not None:
            self._retire_unused(old)

    # ---------------------------------------------------------------- triggers

    async def resume(self) -> None:
        """Apply every stored deployment (at start: Triton holds nothing yet)."""
        after: str | None = None
        while True:
            page = await self._runner.read(self._store.list_deployments, after, 100)
            for deployment in page:
                await self.apply(deployment)
            if len(page) < 100:
                return
            after = page[-1].deployment_id

    async def reload_all(self) -> None:
        """After Triton restarted: load and warm every version again (files rewritten if missing)."""
        async with self._lock:
            for name, (loaded, batching) in list(self._loaded.items()):
                try:
                    if (self._repository / name / "config.pbtxt").exists():
                        await self._control.load(name)
                        await self._control.warm(name, loaded.signature)
                    else:
                        await self._materialize(name, loaded.model_version, loaded.signature, batching)
                    _log.info("reloaded after a Triton restart", triton=name)
                except FerryError as error:
                    _log.error("reload after a Triton restart failed", triton=name, error=error.message)

    async def follow_store(self, poll_seconds: float, since: int) -> None:
        """Apply what other replicas change in the shared database (creates, updates, deletes)."""
        revision = since
        while not self._stopping.is_set():
            try:
                changes = await self._runner.read(self._store.changes_since, revision)
                for deployment in changes.deployments:
                    if self.applied_revision(deployment.deployment_id) < deployment.revision:
                        await self.apply(deployment)
                for deployment_id in changes.deleted_ids:
                    known = self._router.get(deployment_id) is not None or deployment_id in self._router.unready_ids()
                    if known or self._retries.wanted(deployment_id):
                        await self.remove(deployment_id)
                revision = changes.revision
            except FerryError as error:
                _log.warning("reading deployment changes failed", error=error.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), poll_seconds)

    async def follow_aliases(self, since: int, on_revision: Callable[[int], Awaitable[None]]) -> None:
        """Re-apply the deployments following an alias when the registry moves it.

        ``since`` is the last alias revision acted on (stored). The SDK's watch resumes after
        every disconnect (UNAVAILABLE: the registry down or restarting) from the last revision
        it delivered, for as long as it takes. Any other error ending the watch, or one met
        while acting on an event, is logged and the watch opened again after a backoff from
        the last revision acted on, so an event is never lost.
        """
        revision = since
        delay = 0.0
        while not self._stopping.is_set():
            watch = self._registry.watch_aliases(since_revision=revision)
            try:
                async with contextlib.aclosing(self._events(watch)) as events:
                    async for event in events:
                        await self._on_alias_event(event)
                        revision = int(event.revision)
                        delay = 0.0
                        await on_revision(revision)
                if self._stopping.is_set():
                    return
                message = "the watch ended"
            except (sdk_errors.FerryError, FerryError) as error:
                message = error.message
            finally:
                watch.cancel()
            delay = min(_WATCH_RETRY_MAX, max(_WATCH_RETRY_FIRST, delay * 2))
            _log.error("alias watch failed; reopening it", error=message, after_revision=revision, retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _events(self, watch: aio.AliasWatch) -> AsyncGenerator[registry_pb2.AliasEvent, None]:
        """The watch's events until it ends or serve stops (its errors are raised)."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        next_event: asyncio.Future[registry_pb2.AliasEvent] | None = None
        try:
            while not self._stopping.is_set():
                next_event = asyncio.ensure_future(watch.__anext__())
                done, _ = await asyncio.wait({next_event, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if next_event not in done:
                    return
                arrived, next_event = next_event, None
                try:
                    event = arrived.result()
                except StopAsyncIteration:
                    return
                yield event
        finally:
            stopping.cancel()
            if next_event is not None:
                watch.cancel()
                next_event.cancel()
                # The watch ends its pending read with StopAsyncIteration once cancelled.
                with contextlib.suppress(BaseException):
                    await next_event

    async def _on_alias_event(self, event: registry_pb2.AliasEvent) -> None:
        parts = event.alias.split("/")  # models/{model}/aliases/{alias}
        if len(parts) != 4:
            return
        model_id, alias = parts[1], parts[3]
        for routes in self._router.all_routes():
            deployment = routes.deployment
            if deployment.model_id != model_id:
                continue
            follows = [
                t
                for t in (
                    deployment.primary,
                    deployment.canary and deployment.canary.target,
                    deployment.shadow and deployment.shadow.target,
                )
                if t
            ]
            if not any(target.alias == alias for target in follows):
                continue
            current = routes.aliases.get(alias)
            shadow_follows = deployment.shadow is not None and deployment.shadow.target.alias == alias
            if current is not None and current.version == event.to_version and not shadow_follows:
                continue  # already there (a replayed event)
            _log.info(
                "alias moved", alias=event.alias, to_version=event.to_version, deployment=deployment.deployment_id
            )
            latest = await self._runner.read(self._store.get, deployment.deployment_id)
            await self.apply(latest)
        # Deployments that failed before their first load follow the alias too.
        for deployment_id in list(self._router.unready_ids()):
            if self._router.get(deployment_id) is None:
                try:
                    latest = await self._runner.read(self._store.get, deployment_id)
                except NotFound:
                    continue
                if latest.model_id == model_id:
                    await self.apply(latest)

    async def stop(self) -> None:
        """End the followers and retries, and wait for pending retirements."""
        self._stopping.set()
        await self._retries.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _classes(text: str) -> tuple[str, ...]:
    """A version's ``classes`` param (a JSON list, as train records it); empty when absent or odd."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _describe(routes: Routes) -> str:
    text = f"version {routes.primary.version}"
    if routes.canary is not None:
        text += f", canary version {routes.canary.version} at {routes.canary_percent}%"
    if routes.shadow is not None:
        text += f", shadow version {routes.shadow.version} at {routes.shadow_percent}%"
    return f"serving {text}"
