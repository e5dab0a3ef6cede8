"""Serve as monitor acts on it: set a deployment's canary percent to 0 (``UpdateDeployment``).

Only the canary's share changes (update mask ``canary.percent``): its target, the primary
and everything else stay as they are, and serve applies it to the row it locks.
"""

from __future__ import annotations

from ferry_sdk import aio, errors

__all__ = ["ServeCanaryControl"]


class ServeCanaryControl:
    """:class:`~ferry_monitor.slos.CanaryControl` through ``ferry_sdk.aio.ServeClient``."""

    def __init__(self, serve: aio.ServeClient, timeout: float = 10.0) -> None:
        self._serve = serve
        self._timeout = timeout

    async def stop_canary(self, deployment: str) -> str:
        name = f"deployments/{deployment}"
        try:
            await self._serve.update_deployment(name, canary_percent=0, timeout=self._timeout)
        except errors.FerryError as error:
            raise RuntimeError(f"UpdateDeployment {name}: {error.code.name}: {error.message}") from None
        return f"{name}: canary set to 0%"

    async def close(self) -> None:
        await self._serve.close()
