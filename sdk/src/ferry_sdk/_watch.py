"""The resume rule of ``WatchAliases``, shared by the sync and asyncio watchers.

A watch reconnects when the stream breaks with UNAVAILABLE (the registry restarted,
drained, or the network dropped) or ends without an error, with ``since_revision`` =
the last revision it *delivered* (exclusive on the server): nothing delivered is
repeated and nothing after it is skipped. Revisions are gap-free and increasing, so
an event at or below the cursor (a replay after a reconnect race) is dropped.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import grpc

from ferry.registry.v1 import registry_pb2 as pb
from ferry_sdk import errors

__all__ = ["Backoff", "WatchCursor", "resumable"]


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
