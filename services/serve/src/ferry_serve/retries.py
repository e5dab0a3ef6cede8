"""Retrying deployments whose apply failed for a passing reason.

An apply that fails because the registry (or its download) or Triton cannot be reached
(:class:`ferry_common.errors.Unavailable`) is not a verdict on the deployment: serve keeps
whatever traffic it has and tries again, 0.5 s after the failure, then doubling up to a
maximum (``FERRY_SERVE_RETRY_MAX_MS``, 10 s by default), until an apply routes it, fails for
good, or the deployment is deleted. :class:`Retries` holds one pending retry per deployment
and its delay; the deployer decides what a retry does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from ferry_common.errors import FerryError
from ferry_common.logs import get_logger

__all__ = ["INITIAL_RETRY_SECONDS", "Retries"]

INITIAL_RETRY_SECONDS = 0.5

_log = get_logger("ferry.serve.retries")


class Retries:
    """One pending retry per deployment, each with its own exponential backoff.

    Args:
        run: what a retry does (called with the deployment id once its delay passed).
        initial: the first delay in seconds; each further failure doubles it.
        maximum: the largest delay in seconds.
    """

    def __init__(
        self,
        run: Callable[[str], Awaitable[None]],
        *,
        initial: float = INITIAL_RETRY_SECONDS,
        maximum: float = 10.0,
    ) -> None:
        self._run = run
        self._initial = initial
        self._maximum = max(initial, maximum)
        self._delays: dict[str, float] = {}  # deployment id -> the delay last scheduled
        self._pending: dict[str, asyncio.Task[None]] = {}  # retries still waiting for their delay
        self._tasks: set[asyncio.Task[None]] = set()  # every retry waiting or running

    def wanted(self, deployment_id: str) -> bool:
        """Whether the deployment's last apply failed for a passing reason (and nothing since ended that)."""
        return deployment_id in self._delays

    def schedule(self, deployment_id: str) -> float:
        """Retry the deployment after the next delay (replacing a retry still waiting); returns the delay."""
        last = self._delays.get(deployment_id)
        delay = self._initial if last is None else min(self._maximum, last * 2)
        self._delays[deployment_id] = delay
        waiting = self._pending.pop(deployment_id, None)
        if waiting is not None:
            waiting.cancel()
        task = asyncio.ensure_future(self._later(deployment_id, delay))
        self._pending[deployment_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delay

    def clear(self, deployment_id: str) -> None:
        """No more retries for the deployment (routed, failed for good, or deleted); the delay starts over."""
        self._delays.pop(deployment_id, None)
        waiting = self._pending.pop(deployment_id, None)
        if waiting is not None:
            waiting.cancel()

    async def _later(self, deployment_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        # From here on this retry runs: a schedule() from inside it must not cancel it.
        if self._pending.get(deployment_id) is asyncio.current_task():
            del self._pending[deployment_id]
        try:
            await self._run(deployment_id)
        except FerryError as error:  # e.g. serve's database unavailable: try again later
            _log.warning("retrying a deployment failed", deployment=deployment_id, error=error.message)
            if self.wanted(deployment_id) and deployment_id not in self._pending:
                self.schedule(deployment_id)

    async def stop(self) -> None:
        """Cancel every retry still waiting or running."""
        tasks = list(self._tasks)
        self._pending.clear()
        self._delays.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
