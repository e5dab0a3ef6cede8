"""Resumable watches: the reconnecting-stream machinery every watcher shares, and the resume
rule of ``WatchAliases``.

A watch reconnects when the stream breaks with UNAVAILABLE (the registry restarted,
drained, or the network dropped) or ends without an error, with ``since_revision`` =
the last revision it *delivered* (exclusive on the server): nothing delivered is
repeated and nothing after it is skipped. Revisions are gap-free and increasing, so
an event at or below the cursor (a replay after a reconnect race) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from ferry.registry.v1 import registry_pb2 as pb
from ferry_sdk import errors

__all__ = ["Backoff", "ResumableAsyncWatch", "ResumableWatch", "WatchCursor", "resumable"]


@dataclass
class Backoff:
    """Exponential backoff with jitter between reconnects.

    Attributes:
        initial: first delay in seconds.
        maximum: cap of a delay.
        give_up_after: raise :class:`ferry_sdk.errors.Unavailable` after this many
            seconds without a successful reconnect; ``None`` keeps trying forever.
    """

    initial: float = 0.1
    maximum: float = 5.0
    give_up_after: float | None = None
    _delay: float = field(default=0.0, init=False)
    _failing_since: float | None = field(default=None, init=False)

    @classmethod
    def fresh(cls, template: Backoff | None) -> Backoff:
        """A new policy with ``template``'s settings (each watch keeps its own state)."""
        if template is None:
            return cls()
        return cls(initial=template.initial, maximum=template.maximum, give_up_after=template.give_up_after)

    @property
    def healthy_after(self) -> float:
        """A stream that stayed open this long had connected (a failed connect ends sooner)."""
        return max(10.0, self.maximum)

    def reset(self) -> None:
        self._delay = 0.0
        self._failing_since = None

    def next_delay(self, error: errors.FerryError) -> float:
        """Seconds to wait before the next attempt; raises ``error`` once out of patience."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif self.give_up_after is not None and now - self._failing_since > self.give_up_after:
            raise error
        self._delay = min(self.maximum, max(self.initial, self._delay * 2))
        return self._delay * random.uniform(0.8, 1.0)


@dataclass
class WatchCursor:
    """Where a watch stands: the parent it follows and the last revision delivered."""

    parent: str
    revision: int

    def request(self) -> pb.WatchAliasesRequest:
        return pb.WatchAliasesRequest(parent=self.parent, since_revision=self.revision)

    def accept(self, event: pb.AliasEvent) -> bool:
        """Whether ``event`` is new (and, if so, move the cursor past it)."""
        if event.revision <= self.revision:
            return False
        self.revision = event.revision
        return True


def resumable(error: errors.FerryError) -> bool:
    """Whether a broken watch should reconnect rather than raise."""
    return error.code is grpc.StatusCode.UNAVAILABLE


E = TypeVar("E")


class ResumableWatch(Iterator[E]):
    """A server stream that reconnects after UNAVAILABLE and resumes where it stood (blocking).

    Subclasses say how to open the stream (:meth:`_start`, from their cursor), which events
    are new (:meth:`_accept`, moving the cursor), and what an ended stream means
    (:meth:`_ended`: ``None`` to finish, else the error to reconnect after). The machinery
    (backoff between attempts, cancel from another thread, context manager) is here.
    """

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self._call: Any = None
        self._opened_at = 0.0
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    def _start(self) -> Any:
        """Open the server stream from the cursor."""
        raise NotImplementedError

    def _accept(self, event: E) -> bool:
        """Whether ``event`` is new (and, if so, move the cursor past it)."""
        raise NotImplementedError

    def _ended(self) -> errors.FerryError | None:
        """The stream ended without an error: ``None`` when the watch is over, else why to reconnect."""
        return errors.Unavailable("the watch stream ended")

    def _error(self, error: errors.FerryError) -> errors.FerryError:
        """The error a broken stream raises (or reconnects after)."""
        return error

    def _wait_limit(self) -> float | None:
        """The longest wait before a reconnect (``None``: the backoff's)."""
        return None

    def __iter__(self) -> ResumableWatch[E]:
        return self

    def __next__(self) -> E:
        while not self._cancelled.is_set():
            call = self._open()
            try:
                event: E = next(call)
            except StopIteration:
                error = self._ended()
                if error is None:
                    break
            except grpc.RpcError as rpc_error:
                if self._cancelled.is_set():
                    break
                error = self._error(errors.from_rpc_error(rpc_error))
                if not resumable(error):
                    raise error from rpc_error
            else:
                if self._accept(event):
                    self._backoff.reset()
                    return event
                continue
            self._reconnect_later(error)
        self.cancel()
        raise StopIteration

    def _open(self) -> Any:
        with self._lock:
            if self._call is None:
                self._call = self._start()
                self._opened_at = time.monotonic()
            return self._call

    def _reconnect_later(self, error: errors.FerryError) -> None:
        with self._lock:
            self._call = None
        if time.monotonic() - self._opened_at > self._backoff.healthy_after:
            self._backoff.reset()  # the stream was up for a while: a fresh failure, not a long outage
        delay = self._backoff.next_delay(error)  # raises once out of patience
        limit = self._wait_limit()
        self._cancelled.wait(delay if limit is None else min(delay, limit))

    def cancel(self) -> None:
        """End the watch; an iteration blocked in another thread stops."""
        self._cancelled.set()
        with self._lock:
            cancel = getattr(self._call, "cancel", None)
        if callable(cancel):
            cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()


class ResumableAsyncWatch(AsyncIterator[E]):
    """:class:`ResumableWatch` for asyncio (``async for``; :meth:`cancel` ends a pending one)."""

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self._call: Any = None
        self._events: AsyncIterator[E] | None = None
        self._opened_at = 0.0
        self._cancelled = False
        self._wake: asyncio.Event | None = None

    def _start(self) -> Any:
        """Open the server stream from the cursor (a grpc.aio call)."""
        raise NotImplementedError

    def _accept(self, event: E) -> bool:
        raise NotImplementedError

    async def _ended(self) -> errors.FerryError | None:
        return errors.Unavailable("the watch stream ended")

    def __aiter__(self) -> ResumableAsyncWatch[E]:
        return self

    async def __anext__(self) -> E:
        while not self._cancelled:
            if self._events is None:
                self._call = self._start()
                self._events = self._call.__aiter__()
                self._opened_at = time.monotonic()
            try:
                event = await self._events.__anext__()
            except StopAsyncIteration:
                error = await self._ended()
                if error is None:
                    break
            except grpc.RpcError as rpc_error:
                if self._cancelled:
                    break
                error = errors.from_rpc_error(rpc_error)
                if not resumable(error):
                    raise error from rpc_error
            except asyncio.CancelledError:
                if self._cancelled:
                    break
                raise
            else:
                if self._accept(event):
                    self._backoff.reset()
                    return event
                continue
            await self._reconnect_later(error)
        self.cancel()
        raise StopAsyncIteration

    async def _reconnect_later(self, error: errors.FerryError) -> None:
        self._call, self._events = None, None
        if time.monotonic() - self._opened_at > self._backoff.healthy_after:
            self._backoff.reset()  # the stream was up for a while: a fresh failure, not a long outage
        delay = self._backoff.next_delay(error)  # raises once out of patience
        self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def cancel(self) -> None:
        """End the watch; a pending ``async for`` stops."""
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()
        if self._wake is not None:
            self._wake.set()

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()
