"""Calls, their outcomes, and the checks every answer must pass."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import currently_in_test_context, event, note
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ferry_common.fuzzing._messages import (
    _is_map,
    sweep,
)

# ----------------------------------------------------------------------------- calls


def _shorten(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return f"{value[: limit // 2]}...[{len(value)} chars]"
    if isinstance(value, bytes) and len(value) > limit:
        return value[: limit // 2] + b"..."
    return value


def _shortened(message: Message, limit: int) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    for field, value in copy.ListFields():
        if _is_map(field):
            assert field.message_type is not None
            entries = list(dict(value).items())[:8]
            target = getattr(copy, field.name)
            target.clear()
            nested = field.message_type.fields_by_name["value"].message_type is not None
            for key, item in entries:
                if nested:
                    target[_shorten(key, limit)].CopyFrom(_shortened(item, limit))
                else:
                    target[_shorten(key, limit)] = _shorten(item, limit)
        elif field.is_repeated:
            items = list(value)
            del value[:]
            if field.message_type is not None:
                value.extend(_shortened(item, limit) for item in items[:8])
            else:
                value.extend(_shorten(item, limit) for item in items[:8])
        elif field.message_type is not None:
            value.CopyFrom(_shortened(value, limit))
        else:
            setattr(copy, field.name, _shorten(value, limit))
    return copy


def describe(request: Message | Sequence[Message], limit: int = 120) -> str:
    """One line per message, long strings and bytes cut (for failure reports)."""
    if isinstance(request, Message):
        body = text_format.MessageToString(_shortened(request, limit), as_one_line=True)
        return f"{type(request).__name__}({body})"
    return "[" + ", ".join(describe(item, limit) for item in request) + "]"


@dataclass(frozen=True)
class Call:
    """One fuzzed call: an RPC and its request (a tuple of messages for a client stream)."""

    rpc: str
    request: Message | tuple[Message, ...]

    def __repr__(self) -> str:
        return f"{self.rpc}: {describe(self.request)}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def calls(rpc: str, requests: SearchStrategy[Any]) -> SearchStrategy[Call]:
    return st.builds(Call, st.just(rpc), requests)


@dataclass(frozen=True)
class Outcome:
    """How a call ended: its status and what it returned."""

    rpc: str
    code: grpc.StatusCode
    details: str
    responses: tuple[Any, ...]

    def __str__(self) -> str:
        details = self.details if len(self.details) <= 300 else f"{self.details[:300]}...[{len(self.details)} chars]"
        return f"{self.rpc} -> {self.code.name} {details!r}"


def call_rpc(
    stub: object, method: MethodDescriptor, request: Message | Sequence[Message], *, timeout: float = 60.0
) -> Outcome:
    """Call ``method`` on a generated sync stub; a client stream sends the messages in order."""
    callable_ = getattr(stub, method.name)
    argument = iter(cast(Sequence[Message], request)) if method.client_streaming else request
    try:
        result = callable_(argument, timeout=timeout)
        responses = tuple(result) if method.server_streaming else (result,)
    except grpc.RpcError as error:
        failed = cast(grpc.Call, error)
        return Outcome(method.name, failed.code(), failed.details() or "", ())
    return Outcome(method.name, grpc.StatusCode.OK, "", responses)


# ---------------------------------------------------------------------------- checks

FORBIDDEN_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
# What grpc says when the status itself could not be delivered (trailers too big) or the
# connection broke: never a status the service chose.
_TRANSPORT_MARKERS = (
    "Stream removed",
    "metadata size",
    "RST_STREAM",
    "Socket closed",
    "Connection reset",
    "failed to connect",
    "Broken pipe",
)
_TRANSPORT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)
MAX_STATUS_MESSAGE_BYTES = 4096
"""Largest status message allowed, as sent (percent-encoded): half the 8 KiB that grpc
clients accept for all trailing metadata by default, so an echoed value never nears it."""


class ForbiddenStatus(AssertionError):
    """The call ended INTERNAL or UNKNOWN."""


class TransportFailure(AssertionError):
    """The status never arrived: trailers refused, stream reset, connection lost."""


class OversizedStatusMessage(AssertionError):
    """The status message is too big for the trailers of a default client."""


class ServerDown(AssertionError):
    """The server stopped answering after a call."""


class PartialState(AssertionError):
    """A failed call left a visible change behind."""


def _encoded_size(message: str) -> int:
    # grpc-message is percent-encoded: bytes outside printable ASCII, and '%', take 3.
    return sum(1 if 0x20 <= byte <= 0x7E and byte != 0x25 else 3 for byte in message.encode())


def _status_problem(outcome: Outcome, allow_deadline: bool) -> AssertionError | None:
    if outcome.code is grpc.StatusCode.OK:
        return None
    if outcome.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return None if allow_deadline else TransportFailure(f"{outcome} (the call hung)")
    if outcome.code in FORBIDDEN_CODES:
        return ForbiddenStatus(str(outcome))
    if "metadata size" in outcome.details:
        # Between grpc's soft and hard limits a too big status is refused at random:
        # either way it is the same bug, reported as one.
        return OversizedStatusMessage(f"{outcome}: the status message did not fit in the trailers")
    # Only the codes grpc itself uses for a broken stream: a service's own status may
    # echo a caller's text that happens to hold a marker ("source: 'RST_STREAM' is not ...").
    if outcome.code in _TRANSPORT_CODES and any(marker in outcome.details for marker in _TRANSPORT_MARKERS):
        return TransportFailure(str(outcome))
    size = _encoded_size(outcome.details)
    if size > MAX_STATUS_MESSAGE_BYTES:
        return OversizedStatusMessage(f"{outcome}: {size} bytes as sent, at most {MAX_STATUS_MESSAGE_BYTES}")
    return None


_INTERNAL_CLASSES: dict[str, type[ForbiddenStatus]] = {}


def _internal(outcome: Outcome, causes: Sequence[str]) -> ForbiddenStatus:
    """An INTERNAL named after the server's exception, so that each cause is its own bug."""
    name = causes[-1].split(":", 1)[0].rsplit(".", 1)[-1] if causes else "Unexplained"
    name = re.sub(r"\W", "", name) or "Unexplained"
    if name not in _INTERNAL_CLASSES:
        _INTERNAL_CLASSES[name] = type(f"InternalFrom{name}", (ForbiddenStatus,), {})
    return _INTERNAL_CLASSES[name](f"{outcome}; the server raised {causes[-1] if causes else 'nothing it logged'}")


def check_outcome(
    outcome: Outcome, *, allow_deadline: bool = False, server_errors: Callable[[], Sequence[str]] | None = None
) -> None:
    """Assert what every call must satisfy (see the module docstring).

    ``allow_deadline`` is for streams that never end by themselves (watches): they
    are read until the call's deadline. ``server_errors`` gives the exceptions the
    server logged during the call (:meth:`ServerProcess.errors_since`), to say what an
    INTERNAL came from.
    """
    if currently_in_test_context():
        note(str(outcome))
        event(outcome.code.name)  # the spread of statuses: pytest --hypothesis-show-statistics
    problem = _status_problem(outcome, allow_deadline)
    if isinstance(problem, ForbiddenStatus) and server_errors is not None:
        problem = _internal(outcome, server_errors())
    if problem is not None:
        raise problem  # one raise site: hypothesis tells bugs apart by exception type


class MalformedResponse(AssertionError):
    """A successful response names a resource in a form the contract does not allow."""


class WrongResource(AssertionError):
    """A successful response is about another resource than the one asked for."""


_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_NUMBER = re.compile(r"[1-9][0-9]{0,18}")


def conforms(value: str, pattern: str) -> bool:
    """Whether ``value`` is a canonical name of ``pattern`` (``models/{model}/versions/{version}``):
    ids match the id pattern in full, ``{version}`` is a positive 64-bit number without leading zeros."""
    parts, template = value.split("/"), pattern.split("/")
    if len(parts) != len(template):
        return False
    for part, expected in zip(parts, template, strict=True):
        if expected == "{version}":
            ok = bool(_NUMBER.fullmatch(part)) and int(part) < 2**63
        elif expected.startswith("{"):
            ok = bool(_ID.fullmatch(part))
        else:
            ok = part == expected
        if not ok:
            return False
    return True


def _strings(message: Message) -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        if _is_map(field):
            continue  # keys and values of maps are free-form
        items = value if field.is_repeated else [value]
        if field.message_type is not None:
            for item in items:
                yield from _strings(item)
        elif field.type == FieldDescriptor.TYPE_STRING:
            for item in items:
                yield field.full_name, item


def check_names(outcome: Outcome, patterns: Mapping[str, str]) -> None:
    """Assert that every name in a successful response is canonical.

    ``patterns`` maps full field names (``ferry.registry.v1.Model.name``) to the
    pattern of their values; empty values are allowed (unset references).
    """
    for response in outcome.responses:
        if not isinstance(response, Message):
            continue
        for field_name, value in _strings(response):
            pattern = patterns.get(field_name)
            if pattern is not None and value and not conforms(value, pattern):
                raise MalformedResponse(f"{outcome}: {field_name} is {_shorten(value, 120)!r}, not {pattern}")


def _same_segment(asked: str, got: str) -> bool:
    if asked == got:
        return True
    number = got.isascii() and got.isdigit()
    if asked == "latest":
        return number
    return number and asked.isascii() and asked.isdigit() and int(asked) == int(got)


def check_same_resource(outcome: Outcome, pairs: Iterable[tuple[str, str]]) -> None:
    """Assert that each (asked, returned) resource name pair names the same resource.

    ``latest`` matches any number, and ASCII digits match by value (``01`` is ``1``);
    nothing else may differ: ``versions/٣`` answered by ``versions/3`` is a bug.
    """
    for asked, got in pairs:
        asked_parts, got_parts = asked.split("/"), got.split("/")
        if len(asked_parts) != len(got_parts) or not all(
            _same_segment(a, g) for a, g in zip(asked_parts, got_parts, strict=True)
        ):
            raise WrongResource(f"{outcome}: asked for {_shorten(asked, 120)!r}, got {_shorten(got, 120)!r}")


def request_strings(request: Message | Sequence[Message]) -> set[str]:
    """Every string a request carries (map keys and values excepted)."""
    messages_ = [request] if isinstance(request, Message) else list(request)
    return {value for message in messages_ for _, value in _strings(message)}


class VisibleState:
    """What callers can see of a service, by named part (``models/churn/versions``), read
    on demand through ``read`` and kept until :meth:`forget` (after any change)."""

    def __init__(self, read: Callable[[str], Any]) -> None:
        self._read = read
        self._known: dict[str, Any] = {}

    def take(self, parts: Iterable[str]) -> dict[str, Any]:
        """The current value of ``parts`` (read once, then from memory)."""
        for part in parts:
            if part not in self._known:
                self._known[part] = self._read(part)
        return {part: self._known[part] for part in parts}

    def forget(self) -> None:
        self._known.clear()

    def check_unchanged(self, before: Mapping[str, Any], outcome: Outcome) -> None:
        """Assert that the failed call ``outcome`` left ``before`` as it was."""
        after = {part: self._read(part) for part in before}
        self._known.update(after)
        changed = sorted(part for part in before if before[part] != after[part])
        if changed:
            raise PartialState(f"{outcome} but changed {', '.join(changed[:5])}")


def swept_calls(base: Call, extra: Mapping[str, Sequence[tuple[str, Any]]] | None = None) -> Iterator[tuple[str, Call]]:
    """:func:`sweep` of a call's request (of the first message, for a client stream)."""
    if isinstance(base.request, Message):
        for label, request in sweep(base.request, extra=extra):
            yield label, Call(base.rpc, request)
        return
    first, *rest = base.request
    for label, message in sweep(first, extra=extra):
        yield label, Call(base.rpc, (message, *rest))
