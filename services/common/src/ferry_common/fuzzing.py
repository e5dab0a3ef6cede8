"""Property-based fuzzing of Ferry's gRPC services: strategies and checks (a test helper library).

Requests. :func:`messages` fills any protobuf message from its descriptor; a test gives
each field that matters a :class:`Field` of sane values (existing resources, valid ids)
and nasty ones, and gets requests of three kinds: all sane (to reach the service's
logic), one bad field (sane but for one field, nested ones included), and anything.
The nasty values: ids with a trailing newline or a look-alike letter, version segments
in non-ASCII digits (``'²'``, ``'٣'``) or past 64 bits, page tokens that decode to lists,
huge numbers or deep nesting, unknown enum numbers, strings of 10 KB and more, label
maps with bad keys, mutated files, and client streams in every order. :func:`sweep`
adds a deterministic pass: each field of a sane request in turn set to a classic bad value.

Checks. What a caller may rely on whatever it sends: the status is never INTERNAL or
UNKNOWN and the call does not hang (:func:`check_outcome`); the status message fits in a
default client's trailers (a server that echoes a 70 KB id gets them refused); a success
names resources canonically and answers about the resource asked for
(:func:`check_names`, :func:`check_same_resource`); a failed change leaves nothing
visible behind (:class:`VisibleState`). Each kind of failure has its own exception
class (an INTERNAL, one per exception the server logged), so hypothesis reports and
shrinks each kind separately. :class:`ServerProcess` runs the service out of the test's
process, so that a crash is a failed check, not the end of the run.

Needs ``hypothesis`` (a development dependency, not a runtime one).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import pathlib
import re
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, find, given, note, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ferry_common.process import ServiceProcess, SpawnError, spawn_and_wait

__all__ = [
    "FORBIDDEN_CODES",
    "MAX_STATUS_MESSAGE_BYTES",
    "NASTY_STRINGS",
    "OMIT",
    "Call",
    "Field",
    "ForbiddenStatus",
    "MalformedResponse",
    "Outcome",
    "OversizedStatusMessage",
    "PartialState",
    "ServerDown",
    "ServerProcess",
    "TransportFailure",
    "VisibleState",
    "WrongResource",
    "bad_page_tokens",
    "big_budget_requested",
    "call_rpc",
    "calls",
    "check_names",
    "check_outcome",
    "check_same_resource",
    "chunked",
    "client_streams",
    "conforms",
    "describe",
    "enum_numbers",
    "fuzz_settings",
    "huge_text",
    "ids",
    "int_values",
    "json_values",
    "label_maps",
    "messages",
    "mutated_bytes",
    "nasty_doubles",
    "nasty_text",
    "page_sizes",
    "page_tokens",
    "request_strings",
    "resource_names",
    "simplest",
    "sweep",
    "swept_calls",
    "valid_ids",
    "version_segments",
    "well_formed_names",
]

M = TypeVar("M", bound=Message)
T = TypeVar("T")

# ----------------------------------------------------------------------------- scalars

# Protobuf strings are UTF-8: lone surrogates cannot be sent at all.
_CHARS = st.characters(exclude_categories=["Cs"])

NASTY_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x7f",
    ".",
    "..",
    "/",
    "//",
    "./",
    "../",
    "%2e",
    "%2e%2e",
    "%2E%2E",
    "%2f",
    "%2F..",
    "%00",
    "\\",
    "..\\",
    "'",
    '"',
    "`",
    "\u202e",
    "\ufeff",
    "\u00a0",
    "\u2028",
    "\u0130",
    "\u212a",
    "e\u0301",
    "\u00b2",
    "\u0663",
    "\uff11",
    "\u2460",
    "\U0001f4a5",
    "${jndi:ldap://x}",
    "%s%n",
    "{}",
    "[]",
    "null",
    "NaN",
    "-1",
    "0",
    "00",
    "1e400",
    "latest",
    "LATEST",
)


def _repeat(seed: str, size: int) -> str:
    return (seed * (size // len(seed) + 1))[:size]


def huge_text(sizes: Sequence[int] = (63, 64, 257, 2_001, 8_193, 10_001, 20_000, 70_000)) -> SearchStrategy[str]:
    """Long strings, cheap to generate and shrink: a short seed repeated to a size."""
    return st.builds(_repeat, st.text(_CHARS, min_size=1, max_size=3), st.sampled_from(sizes))


def nasty_text(max_size: int = 40) -> SearchStrategy[str]:
    """Short random text, the classic troublemakers, and huge strings."""
    return st.one_of(st.sampled_from(NASTY_STRINGS), st.text(_CHARS, max_size=max_size), huge_text())


_LOOKALIKES = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "k": "\u212a", "i": "\u0131"}


def _lookalike(value: str) -> str:
    for index, char in enumerate(value):
        if char in _LOOKALIKES:
            return value[:index] + _LOOKALIKES[char] + value[index + 1 :]
    return "\uff41" + value[1:]  # fullwidth 'a'


_ID_MUTATIONS: tuple[Callable[[str], str], ...] = (
    lambda v: v + "\n",  # `$` in a regex matches before a final newline
    lambda v: v + "\r\n",
    lambda v: " " + v + " ",
    lambda v: v + "\x00",
    lambda v: v.upper(),
    lambda v: "1" + v,
    lambda v: v + "-",
    lambda v: v + "/..",
    lambda v: (v + "x" * 64)[:64],
    lambda v: _repeat(v or "a", 70_000),
    _lookalike,
)


def valid_ids() -> SearchStrategy[str]:
    """Fresh ids of the pattern every service uses: ``[a-z]([a-z0-9-]{0,61}[a-z0-9])?``."""
    return st.from_regex(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)


def ids(known: Sequence[str] = ()) -> SearchStrategy[str]:
    """Ids: known ones (to reach existing resources), fresh valid ones, and near misses."""
    valid = valid_ids()
    base = st.one_of(st.sampled_from(known), valid) if known else valid
    mutated = st.builds(lambda value, mutate: mutate(value), base, st.sampled_from(_ID_MUTATIONS))
    return st.one_of(base, mutated, mutated, nasty_text())


_VERSION_SEGMENTS = (
    "0",
    "-1",
    "-0",
    "+1",
    "01",
    " 1",
    "1 ",
    "1\n",
    "1.0",
    "1e3",
    "0x1",
    "1_0",
    "\u00b2",
    "\u0663",
    "\uff11",
    "\u2460",
    "\u09e7",
    "\U0001d7cf",
    "latest",
    "LATEST",
    "latest\n",
    " latest",
    "9" * 18,
    "9" * 19,
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    str(10**30),
    "9" * 400,
)


def version_segments(known: Sequence[str] = ("1",)) -> SearchStrategy[str]:
    """Version segments: known numbers, near misses, unicode digits, numbers past 64 bits."""
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(_VERSION_SEGMENTS),
        st.integers(-(2**70), 2**70).map(str),
        st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=25),
        nasty_text(),
    )


_NAME_MANGLES: tuple[Callable[[str], str], ...] = (
    lambda n: "/" + n,
    lambda n: n + "/",
    lambda n: n + "/..",
    lambda n: n.replace("/", "//"),
    lambda n: n.replace("/", "%2F"),
    lambda n: n.replace("/", "/./"),
    lambda n: n.rsplit("/", 1)[0],
    lambda n: n + "/" + n.rsplit("/", 1)[-1],
    lambda n: n.upper(),
    lambda n: n + "\n",
    lambda n: n + "\x00",
    lambda n: " " + n,
    lambda n: n.replace("s/", "/", 1),
    lambda n: n.replace("/", "\u2215"),
    lambda n: n + "?x=1",
    lambda n: "//" + _repeat(n + "/", 30_000),
)


def well_formed_names(pattern: str, **segments: SearchStrategy[str]) -> SearchStrategy[str]:
    """Names of ``pattern`` (``models/{model}/versions/{version}``), each ``{var}`` drawn
    from ``segments[var]`` (default: :func:`valid_ids`)."""
    parts = [
        segments.get(part[1:-1], valid_ids()) if part.startswith("{") else st.just(part) for part in pattern.split("/")
    ]
    return st.tuples(*parts).map("/".join)


def resource_names(pattern: str, **segments: SearchStrategy[str]) -> SearchStrategy[str]:
    """Names of ``pattern`` (``models/{model}/versions/{version}``) and mangled ones.

    Each ``{var}`` is drawn from ``segments[var]`` (default: :func:`ids`).
    """
    variables = [part[1:-1] for part in pattern.split("/") if part.startswith("{")]
    well_formed = well_formed_names(pattern, **{name: segments.get(name, ids()) for name in variables})
    mangled = st.builds(lambda name, mangle: mangle(name), well_formed, st.sampled_from(_NAME_MANGLES))
    return st.one_of(well_formed, well_formed, mangled, nasty_text())


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def int_values(low: int, high: int, known: Sequence[int] = ()) -> SearchStrategy[int]:
    """Integers in ``[low, high]`` biased to the edges: 0, ±1, 32-bit and 53-bit limits, the bounds."""
    edges = [0, 1, -1, 2, 2**31 - 1, -(2**31), 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), low, high, *known]
    return st.one_of(st.sampled_from(sorted({e for e in edges if low <= e <= high})), st.integers(low, high))


def page_sizes() -> SearchStrategy[int]:
    return int_values(-(2**31), 2**31 - 1, (1000, 1001, 50))


def nasty_doubles() -> SearchStrategy[float]:
    specials = [0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 1e-300, 0.5, 1.0000001]
    return st.one_of(st.sampled_from(specials), st.floats(allow_nan=True, allow_infinity=True))


def enum_numbers(enum: EnumDescriptor) -> SearchStrategy[int]:
    """Defined numbers of ``enum`` and unknown ones (proto3 enums are open: any int32 arrives)."""
    defined = sorted(value.number for value in enum.values)
    unknown = [defined[-1] + 1, -1, 2**31 - 1, -(2**31), 1000]
    return st.one_of(st.sampled_from(defined), st.sampled_from(unknown), st.integers(-(2**31), 2**31 - 1))


def label_maps() -> SearchStrategy[dict[str, str]]:
    """Label maps: good ones, bad keys (empty, ``a=b``, quotes, unicode, huge), bad values, too many."""
    keys = st.one_of(st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True), nasty_text())
    values = st.one_of(st.text(_CHARS, max_size=12), nasty_text())
    many = st.builds(
        lambda count, value: {f"k{index}": value for index in range(count)},
        st.sampled_from((64, 65, 1000)),
        st.sampled_from(("", "v", '"')),
    )
    return st.one_of(st.dictionaries(keys, values, max_size=4), many)


# --------------------------------------------------------------------------- page tokens

_JSON_SCALARS: SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from((0, -1, 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 10**300)),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(_CHARS, max_size=12),
    huge_text((2_000, 20_000)),
)


def _json_containers(inner: SearchStrategy[Any]) -> SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(_CHARS, max_size=6), inner, max_size=3))


def json_values() -> SearchStrategy[Any]:
    """Any JSON value: scalars with huge numbers and NaN, lists, objects."""
    return st.recursive(_JSON_SCALARS, _json_containers, max_leaves=6)


def _encode_token(payload: Any, encoding: str) -> str:
    text = payload if isinstance(payload, str) and encoding.startswith("raw") else json.dumps(payload)
    data = text.encode()
    if encoding == "urlsafe":
        return base64.urlsafe_b64encode(data).decode()
    if encoding == "standard":
        return base64.b64encode(data).decode()
    if encoding == "unpadded":
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    if encoding == "newline":
        return base64.urlsafe_b64encode(data).decode() + "\n"
    return base64.urlsafe_b64encode(data).decode()  # raw: the text itself is the JSON


def page_tokens(
    templates: Sequence[Mapping[str, Any]] = ({},), keys: Sequence[str] = ("after",)
) -> SearchStrategy[str]:
    """Page tokens: base64 JSON shaped like the service's own (``templates`` plus ``keys``
    holding any JSON value), base64 of lists, numbers and deep nesting, and garbage."""
    positions = st.builds(
        lambda template, extra: {**template, **extra},
        st.sampled_from(templates),
        st.dictionaries(st.one_of(st.sampled_from(keys), st.text(_CHARS, max_size=6)), json_values(), max_size=3),
    )
    bad = st.builds(
        lambda template, key, value: {**template, key: value},
        st.sampled_from(templates),
        st.sampled_from(keys),
        st.one_of(
            _JSON_SCALARS,
            st.lists(_JSON_SCALARS, max_size=2),
            st.dictionaries(st.text(max_size=3), _JSON_SCALARS, max_size=2),
        ),
    )
    deep = st.builds(lambda depth: "[" * depth + "]" * depth, st.sampled_from((100, 1_000, 100_000)))
    encoded = st.builds(
        _encode_token,
        st.one_of(bad, bad, positions, json_values()),
        st.sampled_from(("urlsafe", "urlsafe", "standard", "unpadded", "newline")),
    )
    return st.one_of(
        st.just(""),
        encoded,
        st.builds(_encode_token, deep, st.just("raw")),
        st.binary(max_size=40).map(lambda data: base64.urlsafe_b64encode(data).decode()),
        nasty_text(),
    )


# ------------------------------------------------------------------------------- bytes


def _mutate(seed: bytes, edits: Sequence[tuple[str, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for kind, position, blob in edits:
        at = position % (len(data) + 1)
        if kind == "flip" and data:
            data[at % len(data)] ^= 1 << (position % 8)
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = blob
        elif kind == "delete":
            del data[at : at + len(blob) + 1]
        elif kind == "duplicate":
            data[at:at] = data[at : at + 64]
    return bytes(data)


def mutated_bytes(seeds: Sequence[bytes]) -> SearchStrategy[bytes]:
    """Valid files (``seeds``) with bytes flipped, cut, inserted, deleted or repeated."""
    edit = st.tuples(
        st.sampled_from(("flip", "truncate", "insert", "delete", "duplicate")),
        st.integers(0, 2**20),
        st.binary(min_size=1, max_size=8),
    )
    # Drawn by index: a strategy's repr holds its values, and files make it huge.
    seed = st.integers(0, len(seeds) - 1).map(lambda index: seeds[index])
    return st.builds(_mutate, seed, st.lists(edit, max_size=4))


def _cut(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted(cut % (len(data) + 1) for cut in cuts)
    return [data[start:end] for start, end in itertools.pairwise([0, *points, len(data)])]


def chunked(contents: SearchStrategy[bytes]) -> SearchStrategy[list[bytes]]:
    """``contents`` split at random points (empty chunks included)."""
    return st.builds(_cut, contents, st.lists(st.integers(0, 2**20), max_size=4))


_ORDERS = (
    "normal",
    "normal",
    "normal",
    "empty",
    "no_header",
    "chunk_first",
    "header_twice",
    "header_last",
    "header_only",
    "blank_message",
    "header_inside",
)


def _arrange(order: str, header: M, second: M, body: Sequence[M], blank: M, at: int) -> tuple[M, ...]:
    items = list(body)
    if order == "empty":
        return ()
    if order == "no_header":
        return tuple(items)
    if order == "chunk_first":
        return (*items[:1], header, *items[1:]) if items else (blank, header)
    if order == "header_twice":
        return (header, second, *items)
    if order == "header_last":
        return (*items, header)
    if order == "header_only":
        return (header,)
    if order == "blank_message":
        return (header, blank, *items)
    if order == "header_inside":
        index = at % (len(items) + 1)
        return (header, *items[:index], second, *items[index:])
    return (header, *items)


def client_streams(header: SearchStrategy[M], body: SearchStrategy[list[M]], blank: M) -> SearchStrategy[tuple[M, ...]]:
    """Client streams: header then body (the normal case, drawn most), and every disorder:
    empty stream, no header, a chunk before the header, the header twice, the header last,
    only the header, a message with no payload (``blank``)."""
    return st.builds(_arrange, st.sampled_from(_ORDERS), header, header, body, st.just(blank), st.integers(0, 16))


# -------------------------------------------------------------------- message strategy


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()
"""Drawn from an override strategy, leaves the field unset (not even its zero value)."""


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_synthetic_oneof(field: FieldDescriptor) -> bool:
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == f"_{field.name}"


def _scalar(field: FieldDescriptor) -> SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return int_values(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_STRING:
        return nasty_text()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from((b"", b"\x00" * 9, b"\xff\xfe", b"PAR1")))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return nasty_doubles() if kind == FieldDescriptor.TYPE_DOUBLE else st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return enum_numbers(field.enum_type)
    raise TypeError(f"no strategy for field {field.full_name} of type {kind}")


def _field_values(
    field: FieldDescriptor, overrides: Mapping[str, SearchStrategy[Any]], path: str, depth: int
) -> SearchStrategy[Any] | None:
    if path in overrides:
        return overrides[path]
    if _is_map(field):
        assert field.message_type is not None
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        values = _field_values(value_field, overrides, f"{path}.value", depth)
        if values is None:
            return None
        return st.dictionaries(_scalar(key_field), values, max_size=4)
    if field.message_type is not None:
        if depth <= 0:
            return None
        element: SearchStrategy[Any] = _message_values(field.message_type, overrides, f"{path}.", depth - 1)
    else:
        element = _scalar(field)
    return st.lists(element, max_size=4) if field.is_repeated else element


def _message_values(
    descriptor: Descriptor, overrides: Mapping[str, SearchStrategy[Any]], prefix: str, depth: int
) -> SearchStrategy[Message]:
    required: dict[str, SearchStrategy[Any]] = {}
    optional: dict[str, SearchStrategy[Any]] = {}
    oneofs: dict[str, list[SearchStrategy[tuple[str, Any]]]] = {}
    for field in descriptor.fields:
        path = prefix + field.name
        values = _field_values(field, overrides, path, depth)
        if values is None:
            continue
        if field.containing_oneof is not None and not _is_synthetic_oneof(field):
            member = st.tuples(st.just(field.name), values)
            oneofs.setdefault(field.containing_oneof.name, []).append(member)
        elif path in overrides:
            required[field.name] = values
        else:
            optional[field.name] = values
    for name, members in oneofs.items():
        required[f"oneof:{name}"] = st.one_of(st.none(), *members)
    message_class = GetMessageClass(descriptor)
    return st.fixed_dictionaries(required, optional=optional).map(lambda values: _build(message_class, values))


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        assert field.message_type is not None
        if field.message_type.fields_by_name["value"].message_type is not None:
            for key, item in value.items():
                target[key].CopyFrom(item)
        else:
            target.update(value)
    elif field.is_repeated:
        if field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _build(message_class: type[Message], values: Mapping[str, Any]) -> Message:
    message = message_class()
    fields = cast(Descriptor, message_class.DESCRIPTOR).fields_by_name
    for key, value in values.items():
        if key.startswith("oneof:"):
            if value is None:
                continue
            key, value = value
        if value is OMIT:
            continue
        _assign(message, fields[key], value)
    return message


@dataclass(frozen=True)
class Field:
    """The values of one field: ``sane`` ones reach past validation, ``nasty`` ones should not."""

    sane: SearchStrategy[Any]
    nasty: SearchStrategy[Any]


class _Absent:
    pass


_ABSENT = _Absent()


def _below(path: str, overrides: Mapping[str, Field]) -> bool:
    return any(key.startswith(path + ".") for key in overrides)


def _paths(descriptor: Descriptor, overrides: Mapping[str, Field], prefix: str, depth: int) -> list[str]:
    """Every field path a single bad value may go to (not inside overridden or repeated fields)."""
    found: list[str] = []
    for field_ in descriptor.fields:
        path = prefix + field_.name
        found.append(path)
        nested = field_.message_type is not None and not field_.is_repeated
        if nested and path not in overrides and depth > 0:
            assert field_.message_type is not None
            found.extend(_paths(field_.message_type, overrides, path + ".", depth - 1))
    return found


def _targeted(
    draw: st.DrawFn, descriptor: Descriptor, overrides: Mapping[str, Field], prefix: str, depth: int, target: str
) -> Message:
    """Sane values everywhere but at ``target`` (``""``: nowhere), which gets a nasty one.

    Fields with no sane values of their own (no override at or below them) stay unset.
    """
    anything = {path: st.one_of(value.sane, value.nasty) for path, value in overrides.items()}
    chosen: dict[str, Any] = {}
    oneofs: dict[str, list[FieldDescriptor]] = {}
    for field_ in descriptor.fields:
        if field_.containing_oneof is not None and not _is_synthetic_oneof(field_):
            oneofs.setdefault(field_.containing_oneof.name, []).append(field_)
        else:
            chosen[field_.name] = _targeted_value(draw, field_, overrides, anything, prefix, depth, target)
    for members in oneofs.values():
        paths = {member.name: prefix + member.name for member in members}
        aimed = [m for m in members if target == paths[m.name] or target.startswith(paths[m.name] + ".")]
        sane = [m for m in members if paths[m.name] in overrides or _below(paths[m.name], overrides)]
        pool = aimed or sane
        if pool:
            member = draw(st.sampled_from(pool))
            chosen[member.name] = _targeted_value(draw, member, overrides, anything, prefix, depth, target)
    message = GetMessageClass(descriptor)()
    for name, value in chosen.items():
        if value is not _ABSENT and value is not OMIT:
            _assign(message, descriptor.fields_by_name[name], value)
    return message


def _targeted_value(
    draw: st.DrawFn,
    field_: FieldDescriptor,
    overrides: Mapping[str, Field],
    anything: Mapping[str, Any],
    prefix: str,
    depth: int,
    target: str,
) -> Any:
    path = prefix + field_.name
    if path == target:
        override = overrides.get(path)
        if override is not None:
            return draw(override.nasty)
        values = _field_values(field_, anything, path, depth)
        return _ABSENT if values is None else draw(values)
    if path in overrides:
        return draw(overrides[path].sane)
    aimed = target.startswith(path + ".")
    if field_.message_type is not None and not field_.is_repeated and (aimed or _below(path, overrides)):
        return _targeted(draw, field_.message_type, overrides, path + ".", depth - 1, target)
    return _ABSENT


@st.composite
def _requests(draw: st.DrawFn, descriptor: Descriptor, overrides: Mapping[str, Field], depth: int) -> Message:
    paths = _paths(descriptor, overrides, "", depth)
    mode = draw(st.sampled_from(("sane", "one bad field", "one bad field", "anything")))
    if mode == "anything":
        anything = {path: st.one_of(value.sane, value.nasty) for path, value in overrides.items()}
        return draw(_message_values(descriptor, anything, "", depth))
    target = draw(st.sampled_from(paths)) if mode == "one bad field" else ""
    return _targeted(draw, descriptor, overrides, "", depth, target)


def messages(
    message_class: type[M], fields: Mapping[str, Field | SearchStrategy[Any]] | None = None, *, max_depth: int = 4
) -> SearchStrategy[M]:
    """``message_class`` requests, filled from the descriptor, in three kinds.

    - sane: every field of ``fields`` holds a sane value, the others are unset, so the
      request reaches the service's logic (and often succeeds);
    - one bad field: the same, except one field (any field of the message, nested ones
      included) holds a nasty value;
    - anything: every field may be missing or nasty; a oneof gets at most one member,
      maps and repeated fields up to 4 entries.

    ``fields`` maps dotted paths from the root (``"model_version.artifact.uri"``) to a
    :class:`Field`, or to one strategy for both its sane and nasty values. A field
    drawing :data:`OMIT` stays unset. Repeated and map fields are given as a whole.
    """
    descriptor = cast(Descriptor, message_class.DESCRIPTOR)
    overrides = {
        path: value if isinstance(value, Field) else Field(value, value) for path, value in (fields or {}).items()
    }
    return cast(SearchStrategy[M], _requests(descriptor, overrides, max_depth))


# ------------------------------------------------------------------- classic values


def simplest(strategy: SearchStrategy[T]) -> T:
    """The simplest value of ``strategy`` (for :func:`messages`: a sane request)."""
    # Hypothesis tries the simplest input first: no need to shrink.
    only_first = settings(database=None, derandomize=True, max_examples=1, phases=[Phase.generate])
    return find(strategy, lambda _: True, settings=only_first)


_HUGE = "\u00e9" * 40_000  # 80 KB as UTF-8, 240 KB percent-encoded if echoed in a status
_LAST_NUMBER = re.compile(r"[0-9]+(?=[^0-9]*$)")
_INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (-1, -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-1, -(2**63), 2**63 - 1),
}


def _classic(field_: FieldDescriptor, current: Any) -> list[tuple[str, Any]]:
    """The values that break servers most often, for one field holding ``current``."""
    kind = field_.type
    if _is_map(field_):
        assert field_.message_type is not None
        value_field = field_.message_type.fields_by_name["value"]
        if value_field.type == FieldDescriptor.TYPE_STRING:
            return [("huge key", {_HUGE: "v"}), ("huge value", {"k": _HUGE}), ("key with newline", {"k\n": "v"})]
        if value_field.type == FieldDescriptor.TYPE_DOUBLE:
            return [("huge key", {_HUGE: 1.0}), ("nan value", {"k": math.nan})]
        return []
    if field_.is_repeated:
        first = current[0] if len(current) else ""
        if kind == FieldDescriptor.TYPE_STRING:
            return [("huge item", [_HUGE]), ("item with newline", [f"{first}\n"])]
        if kind in _INT_EDGES:
            return [("item -1", [-1]), ("huge item", [_INT_EDGES[kind][2]])]
        return []
    if kind == FieldDescriptor.TYPE_STRING:
        # A trailing newline matters where a value is checked (ids, names, URIs): those are set.
        values = [("newline", f"{current}\n")] if current else []
        values += [("80 KB", _HUGE), ("one non-ASCII character", "\u00e9")]
        if _LAST_NUMBER.search(current):
            values.append(("arabic-indic digit", _LAST_NUMBER.sub("\u0663", current)))
            values.append(("10**30", _LAST_NUMBER.sub(str(10**30), current)))
        return values
    if kind in _INT_EDGES:
        return [(str(value), value) for value in _INT_EDGES[kind]]
    if kind == FieldDescriptor.TYPE_ENUM:
        return [("unknown number", 2**31 - 1), ("-1", -1)]
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return [("nan", math.nan), ("-inf", -math.inf)]
    return []


def bad_page_tokens(template: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    """Tokens shaped like a service's own (``template`` plus ``key``), ``key`` holding a
    value the service never issues: past 64 bits, negative, a float, a list, an object."""
    values: list[tuple[str, Any]] = [
        ("10**30", 10**30),
        ("-10**30", -(10**30)),
        ("2**63", 2**63),
        ("1.5", 1.5),
        ("a list", [1]),
        ("an object", {"a": 1}),
        ("true", True),
        ("a string", "x"),
        ("null", None),
    ]
    tokens = [
        (f"page token with {key} = {label}", _encode_token({**template, key: value}, "urlsafe"))
        for label, value in values
    ]
    return [
        *tokens,
        ("page token of a list", _encode_token([1], "urlsafe")),
        ("page token of a number", _encode_token(10**30, "urlsafe")),
    ]


def _sweep(
    message: Message, prefix: str, depth: int, extra: Mapping[str, Sequence[tuple[str, Any]]]
) -> Iterator[tuple[str, str, Any]]:
    for field_ in cast(Descriptor, message.DESCRIPTOR).fields:
        path = prefix + field_.name
        current = getattr(message, field_.name)
        if field_.message_type is not None and not _is_map(field_):
            if depth <= 0 or field_.message_type.full_name == "google.protobuf.Timestamp":
                continue
            if field_.is_repeated:  # the first element, or a new one
                element = current[0] if len(current) else GetMessageClass(field_.message_type)()
                yield from _sweep(element, f"{path}[0].", depth - 1, extra)
            else:
                yield from _sweep(current, path + ".", depth - 1, extra)
            continue
        for label, value in (*_classic(field_, current), *extra.get(path, ())):
            yield path, label, value


def _element(parent: Message, segment: str) -> Message:
    """``parent.steps[0]`` for ``"steps[0]"`` (added when missing), else ``parent.name``."""
    if not segment.endswith("[0]"):
        child: Message = getattr(parent, segment)
        return child
    container = getattr(parent, segment[:-3])
    return cast(Message, container[0] if len(container) else container.add())


def sweep(
    base: Message, *, extra: Mapping[str, Sequence[tuple[str, Any]]] | None = None, max_depth: int = 3
) -> Iterator[tuple[str, Message]]:
    """Copies of ``base``, each with one field (nested ones and the first element of
    repeated messages included) set to a classic bad value: a trailing newline, 80 KB of
    text, one non-ASCII character, an Arabic-Indic digit or 10**30 in place of a number,
    the limits of an integer, an unknown enum number, NaN, bad map keys.

    ``extra`` adds ``(what, value)`` pairs by field path (``"page_token"``).
    Yields ``("path: what", message)``.
    """
    for path, label, value in _sweep(base, "", max_depth, extra or {}):
        copy = type(base)()
        copy.CopyFrom(base)
        *parents, name = path.split(".")
        target = copy
        for parent in parents:
            target = _element(target, parent)
        field_ = cast(Descriptor, target.DESCRIPTOR).fields_by_name[name]
        target.ClearField(name)
        _assign(target, field_, value)
        yield f"{path}: {label}", copy


def swept_calls(base: Call, extra: Mapping[str, Sequence[tuple[str, Any]]] | None = None) -> Iterator[tuple[str, Call]]:
    """:func:`sweep` of a call's request (of the first message, for a client stream)."""
    if isinstance(base.request, Message):
        for label, request in sweep(base.request, extra=extra):
            yield label, Call(base.rpc, request)
        return
    first, *rest = base.request
    for label, message in sweep(first, extra=extra):
        yield label, Call(base.rpc, (message, *rest))


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
    if any(marker in outcome.details for marker in _TRANSPORT_MARKERS):
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


# ---------------------------------------------------------------------------- server


class ServerProcess:
    """A service run as its ``ferry-<service>`` process (:mod:`ferry_common.process`) on a free port.

    Out of the test's process, so that a crash (a segfault in a native library) is a
    failed check rather than the end of the test run, and restartable: its state stays
    on disk. Its JSON log goes to ``log``, where :meth:`errors_since` finds the
    exception behind an INTERNAL status.
    """

    def __init__(self, module: str, service: str, env: Mapping[str, str], log: pathlib.Path) -> None:
        self._module = module
        self._service = service
        self._env = dict(env)
        self._log = log
        self._process: ServiceProcess | None = None
        self.target = ""

    def start(self, timeout: float = 120.0) -> None:
        env = {**self._env, "FERRY_LOG_FORMAT": "json", "OTEL_TRACES_EXPORTER": "none"}
        try:
            self._process = spawn_and_wait(self._service, env=env, log_path=self._log, timeout=timeout)
        except SpawnError as error:
            raise RuntimeError(f"{self._module}: {error}; see {self._log}") from None
        self.target = self._process.address

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()  # the SIGTERM drain; reaped

    def restart(self) -> None:
        self.stop()
        self.start()

    def exit_status(self) -> str:
        """How the process ended (``killed by SIGSEGV``), or ``running``."""
        code = None if self._process is None else self._process.returncode
        if code is None:
            return "running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with {code}"

    def log_mark(self) -> int:
        return self._log.stat().st_size if self._log.exists() else 0

    def errors_since(self, mark: int) -> list[str]:
        """The last line of each exception logged since ``mark`` (``OverflowError: ...``)."""
        with self._log.open("rb") as log:
            log.seek(mark)
            lines = log.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            exception = entry.get("exception") if isinstance(entry, dict) else None
            if isinstance(exception, str) and exception.strip():
                found.append(exception.strip().splitlines()[-1])
        return found


# ---------------------------------------------------------------------------- budget

_FUZZ_MARK = re.compile(r"(?<!not )\bfuzz\b")


def big_budget_requested(markexpr: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the big-budget (``@pytest.mark.fuzz``) tests should run: ``-m fuzz`` or ``FERRY_FUZZ=1``."""
    env = os.environ if environ is None else environ
    return env.get("FERRY_FUZZ", "") in ("1", "true", "yes") or bool(_FUZZ_MARK.search(markexpr or ""))


def fuzz_settings(*, big: bool, environ: Mapping[str, str] | None = None) -> settings:
    """Hypothesis settings: ``FERRY_FUZZ_EXAMPLES`` examples per test (30 by default,
    1000 for the big budget); the normal budget is derandomized and keeps no database."""
    env = os.environ if environ is None else environ
    budget = int(env.get("FERRY_FUZZ_EXAMPLES") or (1000 if big else 30))
    checks = [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ]
    # No explain phase: it replays each failure many times against a real server, and
    # its source inspection trips over the deep recursion some requests cause.
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    if big:
        return settings(
            max_examples=budget, deadline=None, suppress_health_check=checks, phases=phases, print_blob=True
        )
    return settings(
        max_examples=budget, deadline=None, derandomize=True, database=None, suppress_health_check=checks, phases=phases
    )


# ----------------------------------------------------------------------- test bodies


class Checker(Protocol):
    """What a fuzzed service offers the shared tests: a check of one call."""

    def check(self, call: Call) -> None: ...


def assert_all_clean(checker: Checker, calls: Iterable[tuple[str, Call]]) -> None:
    """Check every labelled call and report all bad answers at once."""
    failures = []
    for label, call in calls:
        try:
            checker.check(call)
        except AssertionError as error:
            failures.append(f"{label}: {type(error).__name__}: {str(error)[:400]}")
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures)


def rpc_tests(
    calls: Mapping[str, SearchStrategy[Call]],
    methods: Iterable[str],
    extra: Mapping[str, Mapping[str, Sequence[tuple[str, Any]]]] | None = None,
) -> dict[str, Callable[..., None]]:
    """The tests every fuzzed service runs, for a module's namespace (``globals().update(...)``).

    They take the module's ``fuzzed`` fixture (a :class:`Checker` around the running server).
    """
    import pytest  # a test helper: pytest is there when these run

    names = sorted(calls)
    rpc = pytest.mark.parametrize("rpc", names)

    def test_every_rpc_has_a_strategy() -> None:
        assert set(calls) == set(methods)

    @rpc
    def test_every_field_with_classic_bad_values(fuzzed: Checker, rpc: str) -> None:
        """A sane request with each field in turn set to what breaks servers most often
        (trailing newline, 80 KB, ``٣`` or 10**30 for a number, integer limits, unknown enum)."""
        assert_all_clean(fuzzed, swept_calls(simplest(calls[rpc]), (extra or {}).get(rpc)))

    @rpc
    @fuzz_settings(big=False)
    @given(data=st.data())
    def test_malformed_requests_get_a_clean_status(fuzzed: Checker, rpc: str, data: st.DataObject) -> None:
        fuzzed.check(data.draw(calls[rpc], label=rpc))

    @pytest.mark.fuzz
    @rpc
    @fuzz_settings(big=True)
    @given(data=st.data())
    def test_malformed_requests_get_a_clean_status_big_budget(fuzzed: Checker, rpc: str, data: st.DataObject) -> None:
        fuzzed.check(data.draw(calls[rpc], label=rpc))

    @pytest.fixture(autouse=True)
    def _big_budget_only_when_asked(request: pytest.FixtureRequest) -> None:
        if request.node.get_closest_marker("fuzz") and not big_budget_requested(request.config.option.markexpr):
            pytest.skip("big fuzz budget: run with -m fuzz or FERRY_FUZZ=1")

    tests: list[Callable[..., None]] = [
        test_every_rpc_has_a_strategy,
        test_every_field_with_classic_bad_values,
        test_malformed_requests_get_a_clean_status,
        test_malformed_requests_get_a_clean_status_big_budget,
        _big_budget_only_when_asked,
    ]
    return {test.__name__: test for test in tests}


class FuzzedService:
    """A running service seeded for fuzzing: its channel, stub and liveness check.

    Subclasses give the stub class, ``probe`` (a cheap read that must succeed while the
    server lives), ``seed`` and the property (``check``).
    """

    stub_class: Any = None

    def __init__(self, server: ServerProcess, objects: pathlib.Path, read: Callable[[str], Any]) -> None:
        self.server = server
        self.objects = objects
        self.dirty = True
        self.visible = VisibleState(read)
        self.connect()

    def connect(self) -> None:
        self.channel = grpc.insecure_channel(self.server.target)
        self.stub = self.stub_class(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def probe(self) -> None:
        """A read that works whenever the server does (raises ``grpc.RpcError`` otherwise)."""
        raise NotImplementedError

    def seed(self) -> None:
        raise NotImplementedError

    def check_alive(self, after: Outcome) -> None:
        """Health check and a probe; when they fail, restart the server (its state is on disk)."""
        try:
            health = self.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            self.probe()
            if health.status == health_pb2.HealthCheckResponse.SERVING:
                return
            problem = f"health {health.status}"
        except grpc.RpcError as error:
            problem = f"{error.code().name} {error.details()!r}"
        status = self.server.exit_status()
        self.close()
        self.server.restart()
        self.connect()
        self.dirty = True
        raise ServerDown(f"after {after}: {problem}; the server process: {status}")


def call_tables(
    requests: Mapping[str, Any], tokens: Mapping[str, Sequence[Any]]
) -> tuple[dict[str, SearchStrategy[Call]], dict[str, dict[str, Sequence[tuple[str, Any]]]]]:
    """A module's strategies per RPC, and the extra sweep values: page tokens the service never issued."""
    calls_by_rpc = {rpc: calls(rpc, request) for rpc, request in requests.items()}
    sweep_extra: dict[str, dict[str, Sequence[tuple[str, Any]]]] = {
        rpc: {"page_token": bad_page_tokens(*shape)} for rpc, shape in tokens.items()
    }
    return calls_by_rpc, sweep_extra


def parent_of(name: str) -> str:
    """``models/x`` of ``models/x/versions/3`` (or ``datasets/x`` of ``datasets/x/versions/3``)."""
    return name.rsplit("/", 2)[0]
