"""Strategies for values: text, ids, names, numbers, page tokens, bytes, client-stream orders."""

from __future__ import annotations

import base64
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

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
