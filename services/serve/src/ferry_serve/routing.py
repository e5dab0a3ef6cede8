"""Where each request goes: an immutable routing snapshot per deployment, swapped atomically.

The deployer builds a :class:`Routes` once every version it names is loaded and warm in
Triton, then replaces the deployment's entry in the :class:`Router` in one assignment.
A request reads the entry once, so it is routed wholly by the old or wholly by the new
snapshot, never by a mix; the version it was routed to counts it in flight until the
answer, so a replaced version is unloaded only after its requests finished.

Everything here runs on the server's event loop (no locks needed).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tritonclient.grpc import service_pb2

from ferry_common.errors import NotFound, Unavailable
from ferry_common.names import shorten
from ferry_serve.domain import Deployment, Route, ServedVersion
from ferry_serve.tensors import RequestSpecs
from ferry_serve.triton import Signature

__all__ = ["LoadedVersion", "Picked", "Router", "Routes"]


@dataclass(eq=False)
class LoadedVersion:
    """A registry model version loaded in Triton for one deployment.

    Attributes:
        version: the registry version number.
        model_version: ``models/<m>/versions/<n>``.
        triton_name: the Triton model holding it.
        signature: its inputs and outputs (requests are checked against it).
        classes: the class names of a classifier (the ``probabilities`` columns, in order),
            from the version's ``classes`` param that train records; empty when unknown.
    """

    version: int
    model_version: str
    triton_name: str
    signature: Signature
    classes: tuple[str, ...] = ()
    inflight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    input_specs: RequestSpecs = field(default_factory=lambda: RequestSpecs({}))

    def __post_init__(self) -> None:
        self._idle.set()
        # Built once: every answer of a classifier carries it (gateway.CLASSES_PARAMETER).
        self.classes_parameter = (
            service_pb2.InferParameter(string_param=json.dumps(list(self.classes))) if self.classes else None
        )
        self.input_specs = RequestSpecs(
            {spec.name: (spec.datatype, spec.shape) for spec in self.signature.inputs},
            {spec.name: spec.datatype for spec in self.signature.outputs},
        )

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight on this version (False after ``timeout``)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


@dataclass(frozen=True)
class Picked:
    """Where one request goes."""

    loaded: LoadedVersion
    route: Route
    alias: str
    shadow: LoadedVersion | None


@dataclass(frozen=True)
class Routes:
    """One deployment's routing: primary, optional canary and shadow, and the aliases they follow.

    Attributes:
        deployment: the deployment as applied (its revision).
        primary, canary, shadow: the loaded versions per route.
        canary_percent, shadow_percent: shares of requests that name no version.
        aliases: alias name -> the version it pointed at when applied (targets given by alias).
    """

    deployment: Deployment
    primary: LoadedVersion
    canary: LoadedVersion | None = None
    canary_percent: int = 0
    shadow: LoadedVersion | None = None
    shadow_percent: int = 0
    aliases: Mapping[str, LoadedVersion] = field(default_factory=dict)

    def loaded(self) -> list[LoadedVersion]:
        """Every distinct version this snapshot routes to."""
        seen: dict[str, LoadedVersion] = {}
        for loaded in (self.primary, self.canary, self.shadow):
            if loaded is not None:
                seen.setdefault(loaded.triton_name, loaded)
        return list(seen.values())

    def served(self) -> list[ServedVersion]:
        served = [ServedVersion(self.primary.version, Route.PRIMARY, True)]
        if self.canary is not None:
            served.append(ServedVersion(self.canary.version, Route.CANARY, True))
        if self.shadow is not None:
            served.append(ServedVersion(self.shadow.version, Route.SHADOW, True))
        return served

    def pick(self, requested: str, draw: float, shadow_draw: float = 100.0) -> Picked:
        """Route a request that asked for ``requested`` (``""``, a number or an alias).

        ``draw`` and ``shadow_draw`` are independent uniform numbers in [0, 100) deciding
        the canary and the shadow shares.

        Raises:
            NotFound: the version or alias is not one this deployment serves (names
                ``model_version``).
        """
        shadow = self.shadow if self.shadow is not None and shadow_draw < self.shadow_percent else None
        if not requested:
            if self.canary is not None and draw < self.canary_percent:
                return Picked(self.canary, Route.CANARY, self._alias_of(self.canary), shadow)
            return Picked(self.primary, Route.PRIMARY, self._alias_of(self.primary), shadow)
        if requested.isdigit() and requested.isascii():
            # At most 19 significant digits (64 bits): int() of thousands of digits raises.
            significant = requested.lstrip("0")
            number = int(significant) if 0 < len(significant) <= 19 else 0
            for loaded, route in ((self.primary, Route.PRIMARY), (self.canary, Route.CANARY)):
                if loaded is not None and loaded.version == number:
                    return Picked(loaded, route, "", None)
            raise NotFound(
                f"model_version: version {shorten(requested)} is not served by deployment "
                f"{self.deployment.deployment_id!r} (served: {self._served_text()})",
                field="model_version",
            )
        loaded_by_alias = self.aliases.get(requested)
        if loaded_by_alias is None:
            raise NotFound(
                f"model_version: {shorten(requested)} is neither a version nor an alias that deployment "
                f"{self.deployment.deployment_id!r} follows (aliases: {', '.join(sorted(self.aliases)) or 'none'}; "
                f"served: {self._served_text()})",
                field="model_version",
            )
        route = Route.PRIMARY if loaded_by_alias is self.primary else Route.CANARY
        return Picked(loaded_by_alias, route, requested, None)

    def _alias_of(self, loaded: LoadedVersion) -> str:
        for alias, target in self.aliases.items():
            if target is loaded:
                return alias
        return ""

    def _served_text(self) -> str:
        versions = sorted({self.primary.version} | ({self.canary.version} if self.canary else set()))
        return ", ".join(str(v) for v in versions)


class Router:
    """The routing snapshots of every deployment this process serves."""

    def __init__(self) -> None:
        self._routes: dict[str, Routes] = {}
        self._unready: dict[str, str] = {}  # deployment id -> why it has no routes yet
        self._random = random.Random()

    def routes(self, deployment_id: str) -> Routes:
        """The deployment's current snapshot.

        Raises:
            NotFound: no such deployment (names ``model_name``).
            Unavailable: the deployment exists but none of its versions is ready yet.
        """
        routes = self._routes.get(deployment_id)
        if routes is not None:
            return routes
        reason = self._unready.get(deployment_id)
        if reason is not None:
            raise Unavailable(f"model_name: deployment {deployment_id!r} is not ready: {reason}")
        raise NotFound(
            f"model_name: no deployment {shorten(deployment_id)} (model_name is a deployment id; "
            f"deployments here: {', '.join(sorted(self._routes)) or 'none'})",
            field="model_name",
        )

    def get(self, deployment_id: str) -> Routes | None:
        return self._routes.get(deployment_id)

    def draw(self) -> float:
        return self._random.random() * 100.0

    def swap(self, routes: Routes) -> Routes | None:
        """Install ``routes`` for its deployment; returns the snapshot it replaced."""
        deployment_id = routes.deployment.deployment_id
        self._unready.pop(deployment_id, None)
        old = self._routes.get(deployment_id)
        self._routes[deployment_id] = routes
        return old

    def mark_unready(self, deployment_id: str, reason: str) -> None:
        """A deployment known but without routes (still loading, or failed before its first load)."""
        if deployment_id not in self._routes:
            self._unready[deployment_id] = reason

    def remove(self, deployment_id: str) -> Routes | None:
        self._unready.pop(deployment_id, None)
        return self._routes.pop(deployment_id, None)

    def unready_ids(self) -> list[str]:
        """Deployments known but without routes (loading, or failed before their first load)."""
        return sorted(self._unready)

    def deployment_ids(self) -> list[str]:
        return sorted(self._routes)

    def all_routes(self) -> Iterable[Routes]:
        return list(self._routes.values())

    def in_use(self, triton_name: str) -> bool:
        """Whether any current snapshot routes to ``triton_name``."""
        return any(loaded.triton_name == triton_name for r in self._routes.values() for loaded in r.loaded())
